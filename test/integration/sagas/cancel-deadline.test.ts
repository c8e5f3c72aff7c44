import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, type RunningWorker } from "../../../adapters/workers/worker.ts";
import { executeTaskCommand } from "../../../commands/task/index.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { defineSaga } from "../../../sagas/runtime/types.ts";
import { createSagaHarness, USER, type SagaHarness } from "./support.ts";

/** Cancelling aborts the running request over the cancel subject and compensates completed steps; a deadline fails a stuck task. */
describe("cancellation and deadlines", () => {
  let h: SagaHarness;
  let runtime: SagaRuntime<{ undone: string[] }>;
  let worker: RunningWorker;
  const deps = { undone: [] as string[] };
  const aborted: string[] = [];
  const saga = defineSaga<{ undone: string[] }>({
    kind: "test.cancel",
    steps: {
      prepare: { title: "prepare", run: async () => ({ prepared: true }), compensate: async (task, d) => void d.undone.push(`prepare:${task.taskId}`) },
      wait: { title: "wait for a long time", work: () => ({ service: "slow", action: "wait", datacenter: "dc1" }) },
    },
  });

  beforeAll(async () => {
    h = await createSagaHarness("cxl");
    runtime = new SagaRuntime({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
      sagas: [saga],
      deps,
      ackWaitMs: 5_000,
      timerPollMs: 100,
    });
    runtime.start();
    worker = await startWorker({
      nc: h.nc,
      namespace: h.namespace,
      service: "slow",
      datacenter: "dc1",
      ackWaitMs: 5_000,
      handlers: {
        wait: (request, { signal, progress }) =>
          new Promise((_resolve, reject) => {
            progress(10, "waiting");
            signal.addEventListener("abort", () => {
              aborted.push(request.requestId);
              reject(signal.reason);
            });
          }),
      },
    });
  });
  afterAll(async () => {
    await worker?.stop();
    await runtime?.stop();
    await h?.dispose();
  });

  it("aborts the running request, compensates the completed step, ends cancelled", async () => {
    const id = await h.createTask(saga);
    await h.waitFor([id], (t) => t.steps[1]!.percent === 10, 15_000, "the worker to report progress");
    const task = await h.task(id);
    await executeTaskCommand(h.store, { type: "RequestCancellation", taskId: id, reason: "no longer needed", at: new Date().toISOString() }, {
      actor: USER,
      correlationId: "cancel-1",
      scope: { tenantId: task.scope.tenantId },
    });
    const [cancelled] = await h.waitFor([id], (t) => t.status === "cancelled", 15_000);
    expect(cancelled!.cancellation).toEqual({ reason: "no longer needed" });
    expect(aborted).toEqual([`${id}:wait:1`]);
    expect(deps.undone).toEqual([`prepare:${id}`]);
  });

  it("fails a task whose deadline passes, naming where it was", async () => {
    const id = await h.createTask(saga, { deadlineMs: 1_500 });
    const [failed] = await h.waitFor([id], (t) => t.status === "failed", 15_000);
    expect(failed!.failure).toMatchObject({ code: "deadline_exceeded", step: "wait" });
    expect(failed!.failure!.reason).toMatch(/passed while running in step wait; last progress: waiting/);
    // The worker's request was aborted once the task ended.
    const until = Date.now() + 5_000;
    while (!aborted.includes(`${id}:wait:1`) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(aborted).toContain(`${id}:wait:1`);
  });
});
