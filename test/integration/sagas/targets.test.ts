import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, type RunningWorker } from "../../../adapters/workers/worker.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import { healthBoundMs } from "../../../sagas/runtime/health.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { defineSaga, waitBlocked } from "../../../sagas/runtime/types.ts";
import { createSagaHarness, USER, type SagaHarness } from "./support.ts";

const HEALTH = { heartbeatIntervalMs: 300, missedHeartbeats: 3 };
const BOUND = healthBoundMs(HEALTH);

/**
 * Work addressed to one worker within a datacenter (a hypervisor host), where
 * the target is read from state when the work is requested (resolveWork), and
 * wait steps that block their task on a missing dependency until it appears.
 */
interface Deps {
  /** Where each task's work goes (the "placement" an earlier step made). */
  readonly targets: Map<string, string>;
  /** Open gates: a wait step's dependency that has appeared. */
  readonly open: Set<string>;
}

const deps: Deps = { targets: new Map(), open: new Set() };

const routed = defineSaga<Deps>({
  kind: "test.routed",
  steps: {
    act: {
      title: "act on the placed machine",
      async resolveWork(task, d) {
        const target = d.targets.get(task.taskId);
        if (!target) throw new DomainError("not_placed", `task ${task.taskId} was never placed`, {});
        return { service: "hv", action: "act", datacenter: "dc1", target, payload: { placedOn: target } };
      },
    },
  },
});

const gated = defineSaga<Deps>({
  kind: "test.gated",
  steps: {
    gate: {
      title: "wait for capacity",
      waitingFor: "waiting for capacity",
      async check(task, d) {
        if (d.open.has(task.taskId)) return { through: true };
        return waitBlocked({ dependency: "capacity dc1", kind: "soft", reason: "no hypervisor in dc1 has room" });
      },
      completesOn: [{ eventType: "GateOpened", streamPrefix: "gate-", taskIdOf: (event) => (event.data as { taskId: string }).taskId }],
    },
  },
});

describe("work routed to a target, and wait steps blocked on a dependency", () => {
  let h: SagaHarness;
  let runtime: SagaRuntime<Deps>;
  const workers: RunningWorker[] = [];
  const handled: Array<{ target: string; taskId: string; placedOn: unknown }> = [];
  const startTarget = (target: string) =>
    startWorker({
      nc: h.nc,
      namespace: h.namespace,
      service: "hv",
      datacenter: "dc1",
      target,
      heartbeatIntervalMs: HEALTH.heartbeatIntervalMs,
      ackWaitMs: 5_000,
      handlers: {
        act: async (request) => {
          handled.push({ target, taskId: request.taskId, placedOn: request.payload.placedOn });
          return { by: target };
        },
      },
    });

  beforeAll(async () => {
    h = await createSagaHarness("tgt");
    runtime = new SagaRuntime<Deps>({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
      sagas: [routed, gated],
      deps,
      ackWaitMs: 5_000,
      health: HEALTH,
    });
    runtime.start();
  });
  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await runtime?.stop();
    await h?.dispose();
  });

  it("delivers each task's work only to the worker of its target", async () => {
    workers.push(await startTarget("hv-a"), await startTarget("hv-b"));
    const ids = await Promise.all(["hv-a", "hv-b", "hv-b"].map(async (target) => {
      const id = `t-route-${Math.random().toString(36).slice(2)}`;
      deps.targets.set(id, target);
      return h.createTask(routed, { taskId: id });
    }));
    const done = await h.waitFor(ids, (t) => t.status === "succeeded", 20_000, "succeeded");
    expect(done).toHaveLength(3);
    for (const id of ids) {
      const mine = handled.filter((x) => x.taskId === id);
      expect(mine).toHaveLength(1);
      expect(mine[0]!.target).toBe(deps.targets.get(id));
      expect(mine[0]!.placedOn).toBe(deps.targets.get(id));
    }
  });

  it("blocks a task on the one target whose worker is silent, while another target's worker is alive", async () => {
    const id = `t-route-${Math.random().toString(36).slice(2)}`;
    deps.targets.set(id, "hv-c");
    await h.createTask(routed, { taskId: id });
    const [blocked] = await h.waitFor([id], (t) => t.status === "blocked", BOUND + 5_000, "blocked");
    expect(blocked!.blocked).toMatchObject({ dependency: "worker hv@dc1/hv-c", kind: "hard" });
    expect(blocked!.blocked!.reason).toMatch(/^no heartbeat from hv workers in dc1 \(hv-c\)/);
    workers.push(await startTarget("hv-c"));
    await h.waitFor([id], (t) => t.status === "succeeded", 20_000, "succeeded");
    expect(handled.filter((x) => x.taskId === id).map((x) => x.target)).toEqual(["hv-c"]);
  });

  it("fails the task with the rule's words when resolveWork refuses", async () => {
    const id = await h.createTask(routed, { taskId: `t-unplaced-${Math.random().toString(36).slice(2)}` });
    const [failed] = await h.waitFor([id], (t) => t.status === "failed", 20_000, "failed");
    expect(failed!.failure).toMatchObject({ code: "not_placed", step: "act" });
    expect(failed!.failure!.reason).toContain("was never placed");
  });

  it("keeps a wait step blocked (soft, with the reason) until the dependency appears, then unblocks and completes it", async () => {
    const id = await h.createTask(gated, { taskId: `t-gate-${Math.random().toString(36).slice(2)}` });
    const [blocked] = await h.waitFor([id], (t) => t.status === "blocked", 20_000, "blocked");
    expect(blocked!.blocked).toMatchObject({ step: "gate", dependency: "capacity dc1", kind: "soft", reason: "no hypervisor in dc1 has room" });
    expect(blocked!.steps[0]).toMatchObject({ status: "running", message: "waiting for capacity: no hypervisor in dc1 has room" });

    deps.open.add(id);
    await h.store.append(`gate-${id}`, [{ type: "GateOpened", data: { taskId: id }, actor: USER, scope: { tenantId: "tenant-test" } }], { expectedVersion: "no_stream" });
    const [done] = await h.waitFor([id], (t) => t.status === "succeeded", 20_000, "succeeded");
    expect(done!.blocked).toBeNull();
    const types = (await h.events(id)).map((e) => e.type);
    expect(types.filter((t) => t === "TaskBlocked")).toHaveLength(1);
    expect(types.indexOf("TaskUnblocked")).toBeLessThan(types.indexOf("TaskStepCompleted"));
  });
});
