import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { v7 as uuidv7 } from "uuid";
import type { WorkRequestMessage } from "../../../adapters/workers/port.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, WorkError, type RunningWorker } from "../../../adapters/workers/worker.ts";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { executeTaskCommand, taskEnvelopeScope } from "../../../commands/task/index.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import type { TaskCommandInput } from "../../../domain/task/commands.ts";
import type { ExistingTask } from "../../../domain/task/state.ts";
import {
  beginHostRelease,
  bmcCheckSaga,
  hostPowerSaga,
  hostProvisionSaga,
  hostProvisionTask,
  hostReleaseSaga,
  hostReleaseTask,
  loadHost,
  loadPool,
  WAITING_FOR_INSTALL,
  WAITING_FOR_NETBOOT,
  type MaskinSagaDeps,
} from "../../../sagas/maskin/index.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { createSagaHarness, USER, type SagaHarness } from "../sagas/support.ts";

/**
 * The maskin sagas over real NATS and Postgres, with a FAKE maskin worker
 * (handlers that record what they were asked and answer like the real one)
 * and the boot service's facts sent from the test (RecordNetbootFetched,
 * RecordInstallReported), including before the wait steps start.
 */
const DC = "osl1";
const digest = (token: string) => createHash("sha256").update(token).digest("hex");

interface Call {
  readonly hostId: string;
  readonly action: string;
  readonly arg: string;
}

describe("maskin host sagas (real NATS + Postgres, fake maskin worker)", () => {
  let h: SagaHarness;
  let runtime: SagaRuntime<MaskinSagaDeps>;
  let worker: RunningWorker;
  const calls: Call[] = [];
  /** Per host: makes the next power calls fail as the real worker does when the BMC does not answer. */
  const unreachable = new Map<string, number>();
  /** Per host: the power call waits for this before answering. */
  const gates = new Map<string, Promise<void>>();
  const powered = new Map<string, "on" | "off">();

  const record = (request: WorkRequestMessage, arg: string) => calls.push({ hostId: String(request.payload.hostId), action: request.action, arg });

  beforeAll(async () => {
    h = await createSagaHarness("maskin-saga");
    runtime = new SagaRuntime({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
      sagas: [hostProvisionSaga, hostReleaseSaga, hostPowerSaga, bmcCheckSaga],
      deps: { store: h.store },
      ackWaitMs: 5_000,
      retryBackoff: { baseMs: 100, maxMs: 300 },
    });
    runtime.start();
    worker = await startWorker({
      nc: h.nc,
      namespace: h.namespace,
      service: "maskin",
      datacenter: DC,
      heartbeatIntervalMs: 500,
      ackWaitMs: 5_000,
      handlers: {
        power: async (request) => {
          const hostId = String(request.payload.hostId);
          const operation = String(request.payload.operation);
          await gates.get(hostId);
          const left = unreachable.get(hostId) ?? 0;
          if (left > 0) {
            unreachable.set(hostId, left - 1);
            record(request, `${operation}:unreachable`);
            throw new WorkError(`BMC of ${hostId} at 10.0.0.9:623 did not answer within 5000 ms`, { transient: true, code: "bmc_unreachable" });
          }
          record(request, operation);
          const before = powered.get(hostId) ?? "off";
          if (operation === "on" || operation === "off") powered.set(hostId, operation);
          return { before, after: powered.get(hostId) ?? "off", changed: before !== (powered.get(hostId) ?? "off") };
        },
        bootdev: async (request) => {
          record(request, String(request.payload.device));
          return { device: request.payload.device };
        },
        wipe: async (request) => {
          record(request, "wipe");
          return { wiped: true };
        },
      },
    });
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await runtime?.stop();
    await h?.dispose();
  });

  const boot = { actor: { kind: "service", id: "boot-service" } as const, correlationId: "boot", scope: { tenantId: PLATFORM_TENANT } };
  const netbootFetched = (hostId: string, token: string) =>
    executeHostCommand(h.store, { type: "RecordNetbootFetched", hostId, mac: "52:54:00:12:34:01", tokenDigest: digest(token), at: new Date().toISOString() }, boot);
  const installReported = (hostId: string, token: string, outcome: "succeeded" | "failed", message = "") =>
    executeHostCommand(h.store, { type: "RecordInstallReported", hostId, tokenDigest: digest(token), outcome, message, at: new Date().toISOString() }, boot);

  const create = async (command: TaskCommandInput) => {
    if (command.type !== "CreateTask") throw new Error("not a CreateTask");
    await executeTaskCommand(h.store, command, { actor: USER, correlationId: `create-${command.taskId}`, scope: taskEnvelopeScope(command.scope) });
    return command.taskId;
  };
  const provision = (hostId: string, options: { deadlineMs?: number } = {}) =>
    create(
      hostProvisionTask({
        taskId: uuidv7(),
        hostId,
        datacenter: DC,
        tenantId: "acme",
        projectId: "web",
        environmentId: "prod",
        role: "worker",
        correlationId: `req-${hostId}`,
        now: new Date(),
        ...options,
      }),
    );
  const inStep = (step: string, message?: string) => (t: ExistingTask) =>
    t.status !== "running" && t.status !== "pending" && t.status !== "blocked"
      ? true
      : t.steps.some((s) => s.name === step && s.status === "running" && (message === undefined || s.message === message));
  const callsOf = (hostId: string) => calls.filter((c) => c.hostId === hostId).map((c) => `${c.action} ${c.arg}`);

  it("provisions a host: pxe, power on, waits for netboot and the installer, boot disk, ready", async () => {
    const taskId = await provision("h1");
    const [waiting] = await h.waitFor([taskId], inStep("wait-netboot", WAITING_FOR_NETBOOT), 20_000, "waiting for netboot");
    expect(waiting!.status).toBe("running");
    expect((await loadHost(h.store, "h1")).provisioning?.stage).toBe("netboot-requested");
    await netbootFetched("h1", "token-1");
    const [installing] = await h.waitFor([taskId], inStep("wait-install", WAITING_FOR_INSTALL), 20_000, "waiting for the installer");
    expect(installing!.status).toBe("running");
    await installReported("h1", "token-1", "succeeded", "talos installed to /dev/sda");
    const [done] = await h.waitFor([taskId], (t) => t.status === "succeeded" || t.status === "failed", 20_000, "provisioned");
    expect(done!.status).toBe("succeeded");
    expect(done!.steps.map((s) => s.name)).toEqual(["allocate", "boot-pxe", "power-on", "wait-netboot", "wait-install", "boot-disk", "ready"]);
    expect(callsOf("h1")).toEqual(["bootdev pxe", "power on", "bootdev disk"]);
    const host = await loadHost(h.store, "h1");
    expect(host.state).toBe("ready");
    expect(host.nextBoot).toBe("disk");
    expect(host.provisioning).toMatchObject({ taskId, tenantId: "acme", projectId: "web", environmentId: "prod", stage: "installed" });
    expect((await loadPool(h.store, DC)).allocations.get("h1")).toMatchObject({ taskId, projectId: "web" });
  });

  it("facts that come before the wait steps start count: check reads the host first", async () => {
    let open!: () => void;
    gates.set("h2", new Promise<void>((resolve) => (open = resolve)));
    const taskId = await provision("h2");
    // The power-on request is with the worker (held at the gate) ...
    await h.waitFor([taskId], (t) => t.steps.some((s) => s.name === "power-on" && s.request?.outstanding === true), 20_000, "power-on requested");
    // ... when the host netboots and the installer reports: both facts precede their wait steps.
    await netbootFetched("h2", "token-2");
    await installReported("h2", "token-2", "succeeded");
    open();
    const [done] = await h.waitFor([taskId], (t) => t.status === "succeeded" || t.status === "failed", 20_000, "provisioned");
    expect(done!.status).toBe("succeeded");
    const progressed = (await h.events(taskId)).filter((e) => e.type === "TaskStepProgressed").map((e) => (e.data as { step: string }).step);
    expect(progressed).not.toContain("wait-netboot");
    expect(progressed).not.toContain("wait-install");
    expect((await loadHost(h.store, "h2")).state).toBe("ready");
  });

  it("an installer that reports failure fails the task with its message; the host can then be released", async () => {
    const taskId = await provision("h3");
    await h.waitFor([taskId], inStep("wait-netboot", WAITING_FOR_NETBOOT), 20_000, "waiting for netboot");
    await netbootFetched("h3", "token-3");
    await h.waitFor([taskId], inStep("wait-install", WAITING_FOR_INSTALL), 20_000, "waiting for the installer");
    await installReported("h3", "token-3", "failed", "no disk matched installDiskSelector size >= 100GB");
    const [failed] = await h.waitFor([taskId], (t) => t.status === "failed" || t.status === "succeeded", 20_000, "failed");
    expect(failed!.status).toBe("failed");
    expect(failed!.failure).toMatchObject({ step: "wait-install", code: "install_failed" });
    expect(failed!.failure!.reason).toContain("no disk matched installDiskSelector size >= 100GB");
    // onFailed marks the host so that it can be released.
    await expect.poll(async () => (await loadHost(h.store, "h3")).state, { timeout: 10_000 }).toBe("provision_failed");
    expect(callsOf("h3")).not.toContain("bootdev disk");
  });

  it("an unreachable BMC blocks the task on 'bmc <host>' with the error, retries, and resumes when it answers", async () => {
    unreachable.set("h4", 3);
    const taskId = await provision("h4");
    const [blocked] = await h.waitFor([taskId], (t) => t.status === "blocked" || t.status === "failed", 20_000, "blocked");
    expect(blocked!.status).toBe("blocked");
    expect(blocked!.blocked).toMatchObject({ step: "power-on", dependency: "bmc h4", kind: "hard" });
    expect(blocked!.blocked!.reason).toBe("BMC of h4 at 10.0.0.9:623 did not answer within 5000 ms");
    const [waiting] = await h.waitFor([taskId], inStep("wait-netboot", WAITING_FOR_NETBOOT), 20_000, "resumed to wait for netboot");
    expect(waiting!.status).toBe("running");
    expect(waiting!.blocked).toBeNull();
    expect(callsOf("h4")).toEqual(["bootdev pxe", "power on:unreachable", "power on:unreachable", "power on:unreachable", "power on"]);
    const types = (await h.events(taskId)).map((e) => e.type);
    expect(types.filter((t) => t === "TaskBlocked")).toHaveLength(1);
    expect(types.filter((t) => t === "TaskUnblocked")).toHaveLength(1);
    expect(types.filter((t) => t === "TaskStepAttemptFailed")).toHaveLength(3);
    // Cancelled while it waits: the compensation marks the host provision_failed (then it can be released).
    await executeTaskCommand(h.store, { type: "RequestCancellation", taskId, reason: "test done", at: new Date().toISOString() }, {
      actor: USER,
      correlationId: "cancel",
      scope: taskEnvelopeScope(waiting!.scope),
    });
    await h.waitFor([taskId], (t) => t.status === "cancelled", 20_000, "cancelled");
    await expect.poll(async () => (await loadHost(h.store, "h4")).state, { timeout: 10_000 }).toBe("provision_failed");
  });

  it("a deadline while waiting for netboot fails the task with the stage it waited in", async () => {
    const taskId = await provision("h5", { deadlineMs: 4_000 });
    const [failed] = await h.waitFor([taskId], (t) => t.status === "failed" || t.status === "succeeded", 20_000, "deadline");
    expect(failed!.failure).toMatchObject({ step: "wait-netboot", code: "deadline_exceeded" });
    expect(failed!.failure!.reason).toContain(`last progress: ${WAITING_FOR_NETBOOT}`);
  });

  it("releases a ready host: power off, wipe, back in the pool; a second provision of a held host fails with host_not_free", async () => {
    // h1 is ready (first test) and held: another task cannot take it.
    const second = await provision("h1");
    const [refused] = await h.waitFor([second], (t) => t.status === "failed" || t.status === "succeeded", 20_000, "refused");
    expect(refused!.failure).toMatchObject({ step: "allocate", code: "host_not_free" });
    expect((await loadHost(h.store, "h1")).state).toBe("ready"); // the refused task changed nothing

    const releaseId = uuidv7();
    const scope = await beginHostRelease(h.store, { hostId: "h1", taskId: releaseId, actor: USER, correlationId: "release-h1", now: new Date() });
    expect(scope).toEqual({ tenantId: "acme", projectId: "web", environmentId: "prod" });
    expect((await loadHost(h.store, "h1")).state).toBe("releasing");
    await create(hostReleaseTask({ taskId: releaseId, hostId: "h1", datacenter: DC, scope, correlationId: "release-h1", now: new Date() }));
    const [released] = await h.waitFor([releaseId], (t) => t.status === "succeeded" || t.status === "failed", 20_000, "released");
    expect(released!.status).toBe("succeeded");
    expect(callsOf("h1").slice(-2)).toEqual(["power off", "wipe wipe"]);
    expect((await loadHost(h.store, "h1")).state).toBe("available");
    expect((await loadPool(h.store, DC)).allocations.has("h1")).toBe(false);

    // The failed install's host is released the same way.
    const release3 = uuidv7();
    const scope3 = await beginHostRelease(h.store, { hostId: "h3", taskId: release3, actor: USER, correlationId: "release-h3", now: new Date() });
    await create(hostReleaseTask({ taskId: release3, hostId: "h3", datacenter: DC, scope: scope3, correlationId: "release-h3", now: new Date() }));
    await h.waitFor([release3], (t) => t.status === "succeeded", 20_000, "h3 released");
    expect((await loadPool(h.store, DC)).allocations.has("h3")).toBe(false);

    // Free again: a new provision gets it.
    const again = await provision("h1");
    await h.waitFor([again], inStep("wait-netboot", WAITING_FOR_NETBOOT), 20_000, "provisioning again");
    expect((await loadPool(h.store, DC)).allocations.get("h1")?.taskId).toBe(again);
  });
});
