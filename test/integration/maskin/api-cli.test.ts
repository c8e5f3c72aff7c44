import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsLink } from "../../../adapters/nats/connection.ts";
import { Relay } from "../../../adapters/nats/relay.ts";
import { ensureStreams } from "../../../adapters/nats/topology.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, type RunningWorker } from "../../../adapters/workers/worker.ts";
import type { AuthenticatedActor } from "../../../api/auth/types.ts";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import { bmcCheckSaga, hostPowerSaga, hostProvisionSaga, hostReleaseSaga, loadHost, type MaskinSagaDeps } from "../../../sagas/maskin/index.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { cleanEnv, runCli } from "../../unit/cli/support.ts";
import { createApiHarness, type ApiHarness } from "../api/support/harness.ts";
import { actors } from "../api/support/test-auth.ts";
import { SHARED_NATS_URL, dropNamespace, testNamespace } from "../nats/support/nats.ts";

/**
 * `dvce host ...` and `dvce bmc check` against a real server whose tasks run:
 * the relay, the saga runtime and a FAKE maskin worker on real NATS, the
 * boot service's facts sent from the test.
 */
const BEARER: Record<string, Omit<AuthenticatedActor, "issuer">> = {};
const bearerAuth = {
  async register(app: FastifyInstance) {
    app.decorateRequest("actor", null);
    app.addHook("onRequest", async (request) => {
      const test = request.headers["x-test-actor"];
      if (typeof test === "string") request.actor = { ...JSON.parse(test), issuer: "test" };
      const token = /^Bearer (.+)$/.exec(request.headers.authorization ?? "")?.[1];
      if (token && BEARER[token]) request.actor = { ...BEARER[token]!, issuer: "test" };
    });
  },
};

const DC = "osl1";
const digest = (token: string) => createHash("sha256").update(token).digest("hex");

describe("dvce host and bmc commands", () => {
  let h: ApiHarness;
  let link: NatsLink;
  let relay: Relay;
  let runtime: SagaRuntime<MaskinSagaDeps>;
  let worker: RunningWorker;
  let url: string;
  let tenantId: string;
  let projectId: string;
  const namespace = testNamespace("maskin-cli");
  const calls: string[] = [];
  const env = (token: string) => cleanEnv({ DV_CONFIG: "/nonexistent/dv-config.json", DV_API_URL: url, DV_TOKEN: token });
  const admin = actors.platformAdmin();

  beforeAll(async () => {
    h = await createApiHarness({ auth: bearerAuth });
    await h.app.listen({ host: "127.0.0.1", port: 0 });
    const address = h.app.server.address();
    url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    link = new NatsLink({ servers: SHARED_NATS_URL, name: "test-maskin-cli", reconnectWaitMs: 250 });
    const nc = await link.ready();
    if (!nc) throw new Error("NATS link closed before connecting");
    await ensureStreams(await jetstreamManager(nc), { namespace });
    relay = new Relay({ store: h.db.store, pool: h.db.pool, nats: link, namespace, pollIntervalMs: 200, retry: { initialMs: 100, maxMs: 1000 } });
    relay.start();
    runtime = new SagaRuntime({
      store: h.db.store,
      pool: h.db.pool,
      bus: new JetStreamSagaBus({ nc, namespace }),
      sagas: [hostProvisionSaga, hostReleaseSaga, hostPowerSaga, bmcCheckSaga],
      deps: { store: h.db.store },
      ackWaitMs: 5_000,
    });
    runtime.start();
    let power: "on" | "off" = "off";
    worker = await startWorker({
      nc,
      namespace,
      service: "maskin",
      datacenter: DC,
      heartbeatIntervalMs: 500,
      handlers: {
        power: async (request) => {
          const operation = String(request.payload.operation);
          calls.push(`power ${operation}`);
          const before = power;
          if (operation === "on" || operation === "off") power = operation;
          return {
            hostId: request.payload.hostId,
            operation,
            before,
            after: power,
            changed: before !== power,
            exchanges: [{ operation: "powerStatus", driver: "ipmi", target: "127.0.0.1:9623", command: ["ipmitool", "-I", "lanplus", "chassis", "power", "status"], durationMs: 12, exitCode: 0, outcome: "ok" }],
          };
        },
        bootdev: async (request) => void calls.push(`bootdev ${String(request.payload.device)}`),
      },
    });
    BEARER.admin = admin;
    const post = (path: string, payload: unknown) => h.call(admin, { method: "POST", url: path, payload: payload as Record<string, unknown> });
    tenantId = (await post("/v1/tenants", { name: "acme" })).json().id;
    projectId = (await post(`/v1/tenants/${tenantId}/projects`, { name: "web" })).json().id;
    BEARER.owner = actors.tenantAdmin(tenantId);
    const imported = await post("/v1/inventory/import", {
      document: { datacenters: [{ name: DC, racks: [{ name: "r01", hosts: ["node-01", "node-02", "node-03"].map((name, i) => ({ name, serial: `SN${i}`, macs: [`52:54:00:12:34:0${i + 1}`] })) }] }] },
    });
    expect(imported.statusCode, imported.body).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await runtime?.stop();
    await relay?.stop();
    if (link) {
      const nc = await link.ready();
      if (nc) await dropNamespace(nc, namespace).catch(() => {});
      await link.close();
    }
    await h?.dispose();
  });

  const hostId = async (name: string) => (await h.call(admin, { method: "GET", url: `/v1/hosts?name=${name}` })).json().items[0].id as string;

  it("host list and power status (read model), bmc check (the BMC now) and power on --wait", async () => {
    const list = await runCli("dvce", ["host", "list", "-o", "json"], env("admin"));
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).map((x: { name: string }) => x.name).sort()).toEqual(["node-01", "node-02", "node-03"]);

    const status = await runCli("dvce", ["host", "power", "status", "node-01"], env("admin"));
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/HOST\s+STATE\s+STAGE\s+OBSERVED\s+DESIRED\s+DRIFT/i);
    expect(status.stdout).toMatch(/node-01\s+available\s+-\s+unknown\s+-\s+no/);

    const check = await runCli("dvce", ["bmc", "check", "node-01"], env("admin"));
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain("node-01: power off");
    expect(check.stdout).toContain("127.0.0.1:9623 ok exit=0 12ms  ipmitool -I lanplus chassis power status");

    const on = await runCli("dvce", ["host", "power", "on", "node-01", "--wait"], env("admin"));
    expect(on.code, on.stderr).toBe(0);
    expect(calls).toContain("power on");
    const live = await runCli("dvce", ["host", "power", "status", "node-01", "--live", "-o", "json"], env("admin"));
    expect(live.code, live.stderr).toBe(0);
    expect(JSON.parse(live.stdout.trim().split("\n").at(-1)!)).toMatchObject({ host: "node-01", before: "on", after: "on" });
    expect((await loadHost(h.db.store, await hostId("node-01"))).desiredPower?.state).toBe("on");

    // A tenant-admin cannot see hosts: not found (2).
    expect((await runCli("dvce", ["host", "power", "on", "node-01"], env("owner"))).code).toBe(2);
  });

  it("host provision --wait follows the task through netboot and install; release --wait returns the host", async () => {
    const id = await hostId("node-03");
    const run = runCli("dvce", ["host", "provision", id, "--tenant", tenantId, "--project", projectId, "--role", "controlplane", "--wait"], env("owner"));
    // The boot service's part: the host netboots, the installer reports.
    const until = Date.now() + 30_000;
    while ((await loadHost(h.db.store, id)).provisioning?.stage !== "netboot-requested") {
      if (Date.now() > until) {
        const failed = await Promise.race([run, new Promise((resolve) => setTimeout(() => resolve(null), 100))]);
        throw new Error(`provisioning never asked for a netboot: ${JSON.stringify(failed)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const boot = { actor: { kind: "service", id: "boot" } as const, correlationId: "boot", scope: { tenantId: PLATFORM_TENANT } };
    await executeHostCommand(h.db.store, { type: "RecordNetbootFetched", hostId: id, mac: "52:54:00:12:34:03", tokenDigest: digest("t3"), at: new Date().toISOString() }, boot);
    await executeHostCommand(h.db.store, { type: "RecordInstallReported", hostId: id, tokenDigest: digest("t3"), outcome: "succeeded", message: "", at: new Date().toISOString() }, boot);
    const provisioned = await run;
    expect(provisioned.code, provisioned.stderr).toBe(0);
    expect(provisioned.stderr).toContain(`provision ${id}: task `);
    const host = await loadHost(h.db.store, id);
    expect(host.state).toBe("ready");
    expect(host.provisioning).toMatchObject({ tenantId, projectId, role: "controlplane" });

    const releasing = runCli("dvce", ["host", "release", id, "--wait"], env("owner"));
    // The boot service's part of the release: once the wipe is asked for, the wiper netboots and reports.
    const wipeUntil = Date.now() + 30_000;
    while ((await loadHost(h.db.store, id)).wipe?.stage !== "requested") {
      if (Date.now() > wipeUntil) throw new Error(`the release never asked for a wipe: ${JSON.stringify(await Promise.race([releasing, new Promise((resolve) => setTimeout(() => resolve(null), 100))]))}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect((await loadHost(h.db.store, id)).state).toBe("releasing");
    await executeHostCommand(h.db.store, { type: "RecordWipeNetbootFetched", hostId: id, mac: "52:54:00:12:34:03", tokenDigest: digest("w3"), at: new Date().toISOString() }, boot);
    await executeHostCommand(
      h.db.store,
      { type: "RecordWipeReported", hostId: id, tokenDigest: digest("w3"), outcome: "succeeded", message: "", devices: ["/dev/sda"], bytesWiped: 4096, at: new Date().toISOString() },
      boot,
    );
    const released = await releasing;
    expect(released.code, released.stderr).toBe(0);
    expect((await loadHost(h.db.store, id)).state).toBe("available");
    expect(calls.slice(-4)).toEqual(["power off", "bootdev pxe", "power on", "power off"]);
  });

  it("without --wait: prints the task id (json: the body); a usage error for a bad role", async () => {
    const started = await runCli("dvce", ["host", "provision", "node-02", "--tenant", tenantId, "--project", projectId, "-o", "json"], env("admin"));
    expect(started.code, started.stderr).toBe(0);
    const body = JSON.parse(started.stdout);
    expect(body).toMatchObject({ kind: "maskin.host-provision", location: `/v1/tasks/${body.taskId}` });
    const bad = await runCli("dvce", ["host", "provision", "node-02", "--tenant", tenantId, "--project", projectId, "--role", "master"], env("admin"));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--role must be worker or controlplane");
  });
});
