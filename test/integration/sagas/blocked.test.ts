import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, type RunningWorker } from "../../../adapters/workers/worker.ts";
import { healthBoundMs } from "../../../sagas/runtime/health.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { createLedgerTable, ledgerHandlers, ledgerSaga } from "./fixtures/ledger.ts";
import { createSagaHarness, type SagaHarness } from "./support.ts";

const HEALTH = { heartbeatIntervalMs: 300, missedHeartbeats: 3 };
const BOUND = healthBoundMs(HEALTH);

/** A worker that is down blocks its tasks with a reason within the heartbeat bound; starting it resumes them. */
describe("dependency-blocked tasks", () => {
  let h: SagaHarness;
  let runtime: SagaRuntime;
  const saga = ledgerSaga("test.blocked", "vault");
  const startVault = () =>
    startWorker({ nc: h.nc, namespace: h.namespace, service: "vault", datacenter: "dc2", handlers: ledgerHandlers(h.pool), heartbeatIntervalMs: HEALTH.heartbeatIntervalMs, ackWaitMs: 5_000 });

  beforeAll(async () => {
    h = await createSagaHarness("blk");
    await createLedgerTable(h.pool);
    runtime = new SagaRuntime({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
      sagas: [saga],
      ackWaitMs: 5_000,
      health: HEALTH,
    });
    runtime.start();
  });
  afterAll(async () => {
    await runtime?.stop();
    await h?.dispose();
  });

  it("blocks tasks whose worker was never seen, and resumes them when it starts", async () => {
    const started = Date.now();
    const ids = await Promise.all(Array.from({ length: 5 }, () => h.createTask(saga, { input: { datacenter: "dc2" } })));
    const blocked = await h.waitFor(ids, (t) => t.status === "blocked", BOUND + 3_000, "blocked");
    // Within the bound (counted from when the runtime started watching) plus a check interval and the relay's hop.
    expect(Date.now() - started).toBeLessThan(BOUND + 2_000);
    for (const task of blocked) {
      expect(task.blocked).toMatchObject({ step: "one", dependency: "worker vault@dc2", kind: "hard" });
      expect(task.blocked!.reason).toMatch(/^no heartbeat from vault workers in dc2: never seen/);
    }
    const worker = await startVault();
    try {
      const done = await h.waitFor(ids, (t) => t.status === "succeeded", 20_000, "succeeded");
      expect(done.every((t) => t.failure === null)).toBe(true);
      const types = (await h.events(ids[0]!)).map((e) => e.type);
      expect(types).toContain("TaskBlocked");
      expect(types).toContain("TaskUnblocked");
      expect(types).not.toContain("TaskStepAttemptFailed");
    } finally {
      await worker.stop();
    }
  });

  it("blocks with the time of the last heartbeat when a running worker stops, and resumes on restart", async () => {
    let worker: RunningWorker = await startVault();
    const first = await h.createTask(saga, { input: { datacenter: "dc2" } });
    await h.waitFor([first], (t) => t.status === "succeeded", 20_000);
    await worker.stop();
    const stoppedAt = Date.now();
    const ids = await Promise.all(Array.from({ length: 5 }, () => h.createTask(saga, { input: { datacenter: "dc2" } })));
    const blocked = await h.waitFor(ids, (t) => t.status === "blocked", BOUND + 3_000, "blocked");
    expect(Date.now() - stoppedAt).toBeLessThan(BOUND + 2_500);
    for (const task of blocked) expect(task.blocked!.reason).toMatch(/^no heartbeat from vault workers in dc2 since \d{4}-\d\d-\d\dT/);
    worker = await startVault();
    try {
      const done = await h.waitFor(ids, (t) => t.status === "succeeded", 20_000, "succeeded");
      expect(done).toHaveLength(5);
      const { rows } = await h.pool.query("select task_id, step, count(*)::int as n from ledger where task_id = any($1) group by 1, 2", [ids]);
      expect(rows.map((r) => r.n)).toEqual(Array(15).fill(1));
    } finally {
      await worker.stop();
    }
  });
});
