import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootConfigFromEnv } from "../../../adapters/boot/config.ts";
import { PostgresEventStore } from "../../../adapters/eventstore/postgres/store.ts";
import { createPool } from "../../../adapters/postgres/connection.ts";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import { parseListenAddress, startBootServer, type StartedBootServer } from "../../../cli/up/boot-server.ts";
import { CliError } from "../../../cli/core/errors.ts";
import { childEnv, Running, runBin } from "../../e2e/support.ts";
import { connectShared, dropNamespace, SHARED_NATS_URL, testNamespace } from "../nats/support/nats.ts";
import { createApiHarness, type ApiHarness } from "../api/support/harness.ts";
import { actors } from "../api/support/test-auth.ts";

/**
 * The boot service served by a Maskin worker (`dv worker --service maskin
 * --boot-listen HOST:PORT`): a fastify instance with only /boot/ and
 * /healthz, on the worker's own DATABASE_URL pool and event store, against
 * a real Postgres that the API (here the test harness) imported the
 * inventory into. First in-process over real HTTP, then as a real `dv
 * worker` child process; and the invocations it refuses.
 */
const MAC1 = "52:54:00:77:00:01";
const MAC2 = "52:54:00:77:00:02";
const MAC3 = "52:54:00:77:00:03";
const EXIT = "#!ipxe\nexit\n";

let api: ApiHarness;
let assets: string;
const hostIds: Record<string, string> = {};
const saga = { actor: { kind: "service" as const, id: "saga/maskin" }, correlationId: "test", scope: { tenantId: PLATFORM_TENANT } };
const at = () => new Date().toISOString();
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

async function startProvisioning(hostId: string, taskId: string) {
  await executeHostCommand(api.db.store, { type: "StartProvisioning", hostId, datacenter: "osl1", taskId, tenantId: "tenant-a", projectId: "project-a", environmentId: null, role: "worker", at: at() }, saga);
  await executeHostCommand(api.db.store, { type: "RecordNetbootRequested", hostId, taskId, at: at() }, saga);
}

async function fetchedEvents(hostId: string): Promise<Array<{ data: Record<string, unknown>; actor: string }>> {
  const { rows } = await api.db.pool.query(
    "select data, metadata->'actor'->>'id' as actor from eventstore.events where stream_id = $1 and event_type = 'HostNetbootFetched' order by global_position",
    [`maskin-host-${hostId}`],
  );
  return rows;
}

async function ipxe(base: string, mac: string): Promise<string> {
  const response = await fetch(`${base}/boot/ipxe?mac=${encodeURIComponent(mac)}`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
  expect(response.headers.get("cache-control")).toBe("no-store");
  return response.text();
}

function tokenOf(script: string): string {
  const tokens = [...script.matchAll(/\?token=([A-Za-z0-9_-]+)/g)].map((m) => m[1]!);
  expect(tokens).toHaveLength(2);
  expect(tokens[0]).toBe(tokens[1]);
  return tokens[0]!;
}

beforeAll(async () => {
  assets = await mkdtemp(join(tmpdir(), "dv-boot-worker-"));
  await mkdir(join(assets, "talos-v1.9.5"));
  await writeFile(join(assets, "talos-v1.9.5", "vmlinuz"), "kernel\n");
  await writeFile(join(assets, "talos-v1.9.5", "initramfs.xz"), "initramfs\n");
  api = await createApiHarness();
  const hosts = [MAC1, MAC2, MAC3].map((mac, i) => ({ name: `node-0${i + 1}`, serial: `SNW${i + 1}`, macs: [mac] }));
  const imported = await api.call(actors.platformAdmin(), {
    method: "POST",
    url: "/v1/inventory/import",
    payload: { document: { datacenters: [{ name: "osl1", racks: [{ name: "r01", hosts }] }] } },
  });
  expect(imported.statusCode, imported.body).toBe(200);
  for (const item of imported.json().items) if (item.kind === "host") hostIds[item.name] = item.id;
});

afterAll(async () => {
  await api?.dispose();
  await rm(assets, { recursive: true, force: true });
});

describe("parseListenAddress", () => {
  it("takes HOST:PORT, [IPv6]:PORT and :PORT; refuses the rest as usage errors", () => {
    expect(parseListenAddress("127.0.0.1:8081")).toEqual({ host: "127.0.0.1", port: 8081 });
    expect(parseListenAddress("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseListenAddress(":69")).toEqual({ host: "0.0.0.0", port: 69 });
    expect(parseListenAddress("boot.osl1.internal:80")).toEqual({ host: "boot.osl1.internal", port: 80 });
    for (const bad of ["8080", "host:", "host:99999", "::1:80", "a b:80"]) {
      expect(() => parseListenAddress(bad), bad).toThrow(CliError);
    }
  });
});

describe("the worker's boot server, in-process", () => {
  let server: StartedBootServer;
  let pool: ReturnType<typeof createPool>;
  let store: PostgresEventStore;

  beforeAll(async () => {
    // What runWorker builds: the same bootConfigFromEnv settings, its own pool and event store.
    const boot = await bootConfigFromEnv({ DV_BOOT_ASSETS_DIR: assets, DV_BOOT_KERNEL_ARGS: "console=ttyS0 panic=-1" });
    pool = createPool(api.db.database.url, { max: 3 });
    store = new PostgresEventStore({ pool });
    server = await startBootServer({ host: "127.0.0.1", port: 0, pool, store, boot: boot! });
  });
  afterAll(async () => {
    await server?.close();
    await store?.close();
    await pool?.end();
  });

  it("answers /healthz; no /v1, no GraphQL, no probes of the API", async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok", service: "boot" });
    for (const path of ["/v1/tenants", "/v1/inventory/hosts", "/graphql", "/readyz", "/metrics"]) {
      const response = await fetch(`${server.url}${path}`);
      expect(response.status, path).toBe(404);
      expect(response.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    }
  });

  it("a host being provisioned gets the install script, and the fetch is recorded by the boot service; unknown MACs and idle hosts get exit", async () => {
    const hostId = hostIds["node-01"]!;
    await startProvisioning(hostId, "task-w1");
    const script = await ipxe(server.url, MAC1.toUpperCase());
    const token = tokenOf(script);
    const id = encodeURIComponent(hostId);
    expect(script.split("\n")).toEqual([
      "#!ipxe",
      "echo Dataverket: installing talos-v1.9.5 on node-01",
      `kernel ${server.url}/boot/assets/talos-v1.9.5/vmlinuz console=ttyS0 panic=-1 talos.config=${server.url}/boot/config/${id}?token=${token} dv.callback=${server.url}/boot/callback/${id}?token=${token}`,
      `initrd ${server.url}/boot/assets/talos-v1.9.5/initramfs.xz`,
      "boot",
      "",
    ]);
    const fetched = await fetchedEvents(hostId);
    expect(fetched).toHaveLength(1);
    expect(fetched[0]!.data).toMatchObject({ hostId, mac: MAC1, tokenDigest: sha256(token), taskId: "task-w1" });
    expect(fetched[0]!.actor).toBe("boot-service");

    expect(await ipxe(server.url, "52:54:00:99:99:99")).toBe(EXIT);
    expect(await ipxe(server.url, MAC2)).toBe(EXIT); // in the inventory, nobody provisions it
    expect(await fetchedEvents(hostIds["node-02"]!)).toHaveLength(0);

    // The rest of the flow is the same routes: the asset, and the installer's callback consuming the token.
    const kernel = await fetch(`${server.url}/boot/assets/talos-v1.9.5/vmlinuz`);
    expect(await kernel.text()).toBe("kernel\n");
    const callback = await fetch(`${server.url}/boot/callback/${id}?token=${token}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ outcome: "succeeded" }) });
    expect(callback.status).toBe(204);
    expect(await ipxe(server.url, MAC1)).toBe(EXIT); // installed: boot the disk, no netboot loop
  });
});

describe("dv worker --boot-listen (a real child process)", () => {
  const ns = testNamespace("bootw");
  const namespace = ns.prefix;
  afterAll(async () => {
    const nc = await connectShared("boot-worker-cleanup");
    try {
      await dropNamespace(nc, ns);
    } finally {
      await nc.close();
    }
  });
  const env = (extra: Record<string, string | undefined> = {}) =>
    childEnv({
      DATABASE_URL: api.db.database.url,
      DV_SECRET_KEY: randomBytes(32).toString("base64"),
      NATS_URL: SHARED_NATS_URL,
      DV_NATS_NAMESPACE: namespace,
      DV_MASKIN_OBSERVE_INTERVAL_MS: "0",
      ...extra,
    });
  const args = ["worker", "--service", "maskin", "--datacenter", "osl1"];

  it("serves the boot routes from the worker process until it is stopped", async () => {
    const worker = new Running("dv", [...args, "--boot-listen", "127.0.0.1:0"], env({ DV_BOOT_ASSETS_DIR: assets }));
    try {
      let base = "";
      await worker.waitFor("the boot service's address", () => {
        base = /boot service: (http:\/\/127\.0\.0\.1:\d+)\/boot\/ipxe/.exec(worker.stdout)?.[1] ?? "";
        return base !== "";
      }, 30_000);
      expect(worker.stdout).toContain("serves talos-v1.9.5");
      const hostId = hostIds["node-03"]!;
      await startProvisioning(hostId, "task-w3");
      const script = await ipxe(base, MAC3);
      const token = tokenOf(script);
      expect(script).toContain("echo Dataverket: installing talos-v1.9.5 on node-03");
      expect(script).toContain(`initrd ${base}/boot/assets/talos-v1.9.5/initramfs.xz`);
      const fetched = await fetchedEvents(hostId);
      expect(fetched).toHaveLength(1);
      expect(fetched[0]!.data).toMatchObject({ hostId, mac: MAC3, tokenDigest: sha256(token), taskId: "task-w3" });
      expect(await ipxe(base, "52:54:00:99:99:98")).toBe(EXIT);
      // The worker itself is up as well (NATS reached, consumers started).
      await worker.waitFor("the workers", () => /^ready: /m.test(worker.stdout), 30_000);
      // Stopped right after the fetch's append: its NOTIFY client may still be connecting, and must not hold the process.
      worker.kill("SIGTERM");
      const finished = await Promise.race([worker.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 20_000))]);
      expect(finished, `did not stop within 20 s of SIGTERM\n${worker.output}`).not.toBeNull();
      expect(finished!.code, worker.output).toBe(0);
      await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    } finally {
      await worker.ensureDead();
    }
  }, 120_000);

  it("refuses --boot-listen without a boot image, with a bad address, or without DATABASE_URL: exit 1 before anything starts", async () => {
    const noImage = await runBin("dv", [...args, "--boot-listen", "127.0.0.1:0"], env());
    expect(noImage.code, noImage.stderr).toBe(1);
    expect(noImage.stderr).toContain("--boot-listen: no boot image is configured");
    expect(noImage.stderr).toContain("DV_BOOT_ASSETS_DIR");
    expect(noImage.stdout).not.toContain("waiting for NATS");

    const viaEnv = await runBin("dv", args, env({ DV_BOOT_LISTEN: "127.0.0.1:0" }));
    expect(viaEnv.code, viaEnv.stderr).toBe(1);
    expect(viaEnv.stderr).toContain("no boot image is configured");

    const badAddress = await runBin("dv", [...args, "--boot-listen", "8080"], env({ DV_BOOT_ASSETS_DIR: assets }));
    expect(badAddress.code, badAddress.stderr).toBe(1);
    expect(badAddress.stderr).toContain("expected HOST:PORT");

    const noDatabase = await runBin("dv", [...args, "--boot-listen", "127.0.0.1:0"], env({ DV_BOOT_ASSETS_DIR: assets, DATABASE_URL: "" }));
    expect(noDatabase.code, noDatabase.stderr).toBe(1);
    expect(noDatabase.stderr).toContain("needs DATABASE_URL");
  });
});
