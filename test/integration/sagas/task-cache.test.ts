import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, type RunningWorker } from "../../../adapters/workers/worker.ts";
import { executeTaskCommand } from "../../../commands/task/index.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { createLedgerTable, ledgerHandlers, ledgerSaga } from "./fixtures/ledger.ts";
import { createSagaHarness, USER, type SagaHarness } from "./support.ts";

const SEQUENCE = [
  "TaskCreated",
  "TaskStarted",
  ...["one", "two", "three"].flatMap(() => ["TaskStepStarted", "TaskWorkRequested", "TaskStepCompleted"]),
  "TaskSucceeded",
];

/**
 * The runtime decides on the task state it cached and reacts to its own
 * events at once; the stream stays the truth: another runtime on the same
 * durables, and a writer the runtime has not heard of, only cost reloads.
 */
describe("saga runtime: cached task state and chained reactions", () => {
  let h: SagaHarness;
  let runtimes: SagaRuntime[];
  let workers: RunningWorker[];
  const saga = ledgerSaga("test.cache");
  const slow = ledgerSaga("test.cache-slow", "slowledger");

  beforeAll(async () => {
    h = await createSagaHarness("cache");
    await createLedgerTable(h.pool);
    // Two runtimes sharing the durables: messages of one task land on both, each with its own cache.
    runtimes = [0, 1].map(
      () =>
        new SagaRuntime({
          store: h.store,
          pool: h.pool,
          bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
          sagas: [saga, slow],
          ackWaitMs: 5_000,
          redeliveryBackoff: { baseMs: 20, maxMs: 100 },
          maxDeliver: 10,
        }),
    );
    for (const runtime of runtimes) runtime.start();
    workers = await Promise.all(
      [
        ["ledger", 20],
        ["slowledger", 1_500],
      ].map(([service, delayMs]) =>
        startWorker({
          nc: h.nc,
          namespace: h.namespace,
          service: String(service),
          datacenter: "dc1",
          handlers: ledgerHandlers(h.pool, { delayMs: Number(delayMs) }),
          ackWaitMs: 5_000,
        }),
      ),
    );
  });
  afterAll(async () => {
    for (const worker of workers ?? []) await worker.stop();
    for (const runtime of runtimes ?? []) await runtime.stop();
    await h?.dispose();
  });

  it("two runtimes on the same durables: every task's events in today's order, each side effect once, fewer appends than events", async () => {
    const ids = await Promise.all(Array.from({ length: 30 }, () => h.createTask(saga)));
    await h.waitFor(ids, (t) => t.status === "succeeded", 60_000);
    for (const id of ids) expect((await h.events(id)).map((e) => e.type)).toEqual(SEQUENCE);
    const { rows } = await h.pool.query("select task_id, step, count(*)::int as n from ledger where task_id = any($1) group by 1, 2", [ids]);
    expect(rows).toHaveLength(90);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    const appends = runtimes.reduce((sum, r) => sum + r.stats.taskAppends, 0);
    // 10 events a task after TaskCreated; chained, they take 4 appends (fewer than 10 even when conflicts between the two runtimes cost some).
    expect(appends).toBeLessThan(ids.length * 10);
  });

  it("a writer the cache has not seen yet: the stale append conflicts, the runtime reloads and decides again", async () => {
    const runtime = runtimes[0]!;
    await runtimes[1]!.stop(); // one runtime: its cache holds the task
    const id = await h.createTask(slow);
    await h.waitFor([id], (t) => t.steps[0]!.request?.outstanding === true, 15_000, "step one's request");
    // The relay stops, so the runtime hears nothing of the next event; the worker's answer then meets a cache one event behind.
    await h.relay.stop();
    const loadsBefore = runtime.stats.taskLoads;
    const task = await h.task(id);
    await executeTaskCommand(
      h.store,
      { type: "ReportProgress", taskId: id, step: "one", percent: 50, message: "from elsewhere", at: new Date().toISOString() },
      { actor: USER, correlationId: "elsewhere", scope: { tenantId: task.scope.tenantId } },
    );
    // Chained reactions carry the task to the end without a relayed event.
    await h.waitFor([id], (t) => t.status === "succeeded", 30_000);
    h.relay.start();
    expect(runtime.stats.taskLoads).toBeGreaterThan(loadsBefore);
    const types = (await h.events(id)).map((e) => e.type);
    expect(types).toEqual([...SEQUENCE.slice(0, 4), "TaskStepProgressed", ...SEQUENCE.slice(4)]);
    const { rows } = await h.pool.query("select step, count(*)::int as n from ledger where task_id = $1 group by 1", [id]);
    expect(rows.map((r) => r.n)).toEqual([1, 1, 1]);
  });
});
