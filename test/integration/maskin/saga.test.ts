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
  WAITING_FOR_WIPE,
  type MaskinSagaDeps,
} from "../../../sagas/maskin/index.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { createSagaHarness, USER, type SagaHarness } from "../sagas/support.ts";

/**
 * The maskin sagas over real NATS and Postgres, with a FAKE maskin worker
 * (handlers that record what they were asked and answer like the real one)
 * and the boot service's facts sent from the test (RecordNetbootFetched,
 * RecordInstallReported, RecordWipeNetbootFetched, RecordWipeReported),
 * including before the wait steps start.
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

  const wipeNetbootFetched = (hostId: string, token: string) =>
    executeHostCommand(h.store, { type: "RecordWipeNetbootFetched", hostId, mac: "52:54:00:12:34:01", tokenDigest: digest(token), at: new Date().toISOString() }, boot);
  const wipeReported = (hostId: string, token: string, outcome: "succeeded" | "failed", message = "") =>
    executeHostCommand(
      h.store,
      { type: "RecordWipeReported", hostId, tokenDigest: digest(token), outcome, message, devices: ["/dev/sda"], bytesWiped: 1 << 30, at: new Date().toISOString() },
      boot,
    );

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

  const release = async (hostId: string) => {
    const taskId = uuidv7();
    const scope = await beginHostRelease(h.store, { hostId, taskId, actor: USER, correlationId: `release-${hostId}`, now: new Date() });
    await create(hostReleaseTask({ taskId, hostId, datacenter: DC, scope, correlationId: `release-${hostId}`, now: new Date() }));
    return { taskId, scope };
  };

  it("releases a ready host: power off, netboot the wiper, wait for its report, back in the pool; a second provision of a held host fails with host_not_free", async () => {
    // h1 is ready (first test) and held: another task cannot take it.
    const second = await provision("h1");
    const [refused] = await h.waitFor([second], (t) => t.status === "failed" || t.status === "succeeded", 20_000, "refused");
    expect(refused!.failure).toMatchObject({ step: "allocate", code: "host_not_free" });
    expect((await loadHost(h.store, "h1")).state).toBe("ready"); // the refused task changed nothing

    const before = callsOf("h1").length;
    const { taskId: releaseId, scope } = await release("h1");
    expect(scope).toEqual({ tenantId: "acme", projectId: "web", environmentId: "prod" });
    expect((await loadHost(h.store, "h1")).state).toBe("releasing");
    await h.waitFor([releaseId], inStep("wait-wipe", WAITING_FOR_WIPE), 20_000, "waiting for the wipe");
    const waiting = await loadHost(h.store, "h1");
    expect(waiting.wipe).toMatchObject({ taskId: releaseId, stage: "requested" });
    // Not back in the pool before the wipe reported: the host is still releasing, still allocated.
    expect(waiting.state).toBe("releasing");
    expect((await loadPool(h.store, DC)).allocations.has("h1")).toBe(true);

    // The boot service serves the wipe image, the wiper reports.
    await wipeNetbootFetched("h1", "wipe-token-1");
    await wipeReported("h1", "wipe-token-1", "succeeded");
    const [released] = await h.waitFor([releaseId], (t) => t.status === "succeeded" || t.status === "failed", 20_000, "released");
    expect(released!.status).toBe("succeeded");
    expect(released!.steps.map((s) => s.name)).toEqual(["power-off", "request-wipe", "boot-pxe", "power-on", "wait-wipe", "power-off-wiped", "return"]);
    expect(callsOf("h1").slice(before)).toEqual(["power off", "bootdev pxe", "power on", "power off"]);
    const after = await loadHost(h.store, "h1");
    expect(after.state).toBe("available");
    expect(after.wipe).toMatchObject({ taskId: releaseId, stage: "wiped", devices: ["/dev/sda"], bytesWiped: 1 << 30 });
    expect((await loadPool(h.store, DC)).allocations.has("h1")).toBe(false);

    // Free again: a new provision gets it.
    const again = await provision("h1");
    await h.waitFor([again], inStep("wait-netboot", WAITING_FOR_NETBOOT), 20_000, "provisioning again");
    expect((await loadPool(h.store, DC)).allocations.get("h1")?.taskId).toBe(again);
  });

  it("a wiper that reports failure fails the release with its words; the host stays out of the pool until another release wipes it", async () => {
    // h3's install failed (earlier test): provision_failed, held by its task.
    const { taskId: first } = await release("h3");
    await h.waitFor([first], inStep("wait-wipe", WAITING_FOR_WIPE), 20_000, "waiting for the wipe");
    await wipeNetbootFetched("h3", "wipe-bad");
    await wipeReported("h3", "wipe-bad", "failed", "dd: /dev/sda: I/O error");
    const [failed] = await h.waitFor([first], (t) => t.status === "failed" || t.status === "succeeded", 20_000, "wipe failed");
    expect(failed!.failure).toMatchObject({ step: "wait-wipe", code: "wipe_failed" });
    expect(failed!.failure!.reason).toContain("the wiper reported failure: dd: /dev/sda: I/O error");
    // onFailed marks the host release_failed: out of the pool, not provisionable, releasable by another task.
    await expect.poll(async () => (await loadHost(h.store, "h3")).state, { timeout: 10_000 }).toBe("release_failed");
    expect((await loadHost(h.store, "h3")).releaseFailure).toMatchObject({ taskId: first });
    expect((await loadPool(h.store, DC)).allocations.has("h3")).toBe(true);
    // The old wipe token is spent; a new release takes over and wipes it (facts that come before the wait count).
    const { taskId: second } = await release("h3");
    await h.waitFor([second], (t) => t.steps.some((s) => s.name === "power-on" && s.status === "completed") || t.status === "failed", 20_000, "powered on for the wipe");
    await wipeNetbootFetched("h3", "wipe-good");
    await wipeReported("h3", "wipe-good", "succeeded");
    const [ok] = await h.waitFor([second], (t) => t.status === "succeeded" || t.status === "failed", 20_000, "released");
    expect(ok!.status, JSON.stringify(ok!.failure)).toBe("succeeded");
    expect((await loadHost(h.store, "h3")).state).toBe("available");
    expect((await loadPool(h.store, DC)).allocations.has("h3")).toBe(false);
  });

  it("a release whose deadline passes while waiting for the wipe leaves the host release_failed; a second release task is accepted and completes when the wipe reports", async () => {
    // h5's provisioning hit its deadline (earlier test): provision_failed, held by its task.
    const first = uuidv7();
    const scope = await beginHostRelease(h.store, { hostId: "h5", taskId: first, actor: USER, correlationId: "release-h5", now: new Date() });
    await create(hostReleaseTask({ taskId: first, hostId: "h5", datacenter: DC, scope, correlationId: "release-h5", now: new Date(), deadlineMs: 4_000 }));
    await h.waitFor([first], inStep("wait-wipe", WAITING_FOR_WIPE), 20_000, "waiting for the wipe");
    await wipeNetbootFetched("h5", "wipe-slow"); // the wiper started, and never reports in time
    const [failed] = await h.waitFor([first], (t) => t.status === "failed" || t.status === "succeeded", 20_000, "deadline");
    expect(failed!.failure).toMatchObject({ step: "wait-wipe", code: "deadline_exceeded" });
    await expect.poll(async () => (await loadHost(h.store, "h5")).state, { timeout: 10_000 }).toBe("release_failed");
    const stuck = await loadHost(h.store, "h5");
    expect(stuck.releaseFailure).toMatchObject({ taskId: first });
    expect(stuck.releaseFailure!.reason).toContain(WAITING_FOR_WIPE);
    // its wipe ended with the task: the late report is refused, nothing goes back to the pool
    expect(stuck.wipe).toMatchObject({ taskId: first, stage: "wipe-failed" });
    await expect(wipeReported("h5", "wipe-slow", "succeeded")).rejects.toMatchObject({ code: "wipe_token_invalid" });
    expect((await loadPool(h.store, DC)).allocations.has("h5")).toBe(true);
    // not provisionable from release_failed
    const refusedProvision = await provision("h5");
    const [refused] = await h.waitFor([refusedProvision], (t) => t.status === "failed" || t.status === "succeeded", 20_000, "refused");
    expect(refused!.failure?.code).toMatch(/host_not_free|host_not_available/);
    expect((await loadHost(h.store, "h5")).state).toBe("release_failed");

    // A second release task is accepted, wipes the host again and returns it.
    const { taskId: second, scope: secondScope } = await release("h5");
    expect(secondScope).toEqual({ tenantId: "acme", projectId: "web", environmentId: "prod" });
    expect(await loadHost(h.store, "h5")).toMatchObject({ state: "releasing", releaseTaskId: second });
    await h.waitFor([second], inStep("wait-wipe", WAITING_FOR_WIPE), 20_000, "second release waiting for the wipe");
    expect((await loadHost(h.store, "h5")).wipe).toMatchObject({ taskId: second, stage: "requested" });
    await wipeNetbootFetched("h5", "wipe-again");
    await wipeReported("h5", "wipe-again", "succeeded");
    const [ok] = await h.waitFor([second], (t) => t.status === "succeeded" || t.status === "failed", 20_000, "released");
    expect(ok!.status, JSON.stringify(ok!.failure)).toBe("succeeded");
    expect((await loadHost(h.store, "h5")).state).toBe("available");
    expect((await loadPool(h.store, DC)).allocations.has("h5")).toBe(false);
  });

  it("a release cancelled while its BMC never answers (before any step completed) does not keep the host: the running step's compensation fails the release, the next release takes over", async () => {
    // h2 is ready (second test). Its BMC is gone: the first power-off never gets through.
    unreachable.set("h2", 1_000_000);
    const { taskId: first, scope } = await release("h2");
    const [blocked] = await h.waitFor([first], (t) => t.status === "blocked" || t.status === "failed", 20_000, "blocked on the BMC");
    expect(blocked!.blocked).toMatchObject({ step: "power-off", dependency: "bmc h2" });
    await executeTaskCommand(h.store, { type: "RequestCancellation", taskId: first, reason: "BMC replaced", at: new Date().toISOString() }, {
      actor: USER,
      correlationId: "cancel-release",
      scope: taskEnvelopeScope(scope),
    });
    await h.waitFor([first], (t) => t.status === "cancelled", 20_000, "cancelled");
    // No step completed, but the running power-off's compensation (run before the cancellation is confirmed) records the failed release.
    expect(await loadHost(h.store, "h2")).toMatchObject({ state: "release_failed", releaseFailure: { taskId: first } });

    // The next release takes over.
    unreachable.set("h2", 0);
    const { taskId: second } = await release("h2");
    expect(await loadHost(h.store, "h2")).toMatchObject({ state: "releasing", releaseTaskId: second });
    await h.waitFor([second], inStep("wait-wipe", WAITING_FOR_WIPE), 20_000, "waiting for the wipe");
    await wipeNetbootFetched("h2", "wipe-h2");
    await wipeReported("h2", "wipe-h2", "succeeded");
    const [ok] = await h.waitFor([second], (t) => t.status === "succeeded" || t.status === "failed", 20_000, "released");
    expect(ok!.status, JSON.stringify(ok!.failure)).toBe("succeeded");
    expect((await loadHost(h.store, "h2")).state).toBe("available");
  });

  it("a release cancelled while waiting for the wipe is compensated: the host is release_failed at once", async () => {
    // h4's provisioning was cancelled (earlier test): provision_failed.
    const { taskId, scope } = await release("h4");
    await h.waitFor([taskId], inStep("wait-wipe", WAITING_FOR_WIPE), 20_000, "waiting for the wipe");
    await executeTaskCommand(h.store, { type: "RequestCancellation", taskId, reason: "wrong host", at: new Date().toISOString() }, {
      actor: USER,
      correlationId: "cancel-release-h4",
      scope: taskEnvelopeScope(scope),
    });
    await h.waitFor([taskId], (t) => t.status === "cancelled", 20_000, "cancelled");
    await expect.poll(async () => (await loadHost(h.store, "h4")).state, { timeout: 10_000 }).toBe("release_failed");
    expect((await loadHost(h.store, "h4")).releaseFailure).toMatchObject({ taskId, reason: "task cancelled: wrong host" });
    expect((await loadHost(h.store, "h4")).wipe).toMatchObject({ taskId, stage: "wipe-failed" });
  });
});
