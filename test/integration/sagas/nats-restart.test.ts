import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { STREAMS } from "../../../adapters/nats/namespace.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, type RunningWorker } from "../../../adapters/workers/worker.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { OwnNatsServer, testNamespace } from "../nats/support/nats.ts";
import { createLedgerTable, ledgerHandlers, ledgerSaga } from "./fixtures/ledger.ts";
import { createSagaHarness, type SagaHarness } from "./support.ts";

/** NATS (a server of this test's own, same store dir) stops mid-run and comes back: nothing lost, nothing twice, every task converges. */
describe("NATS restarted mid-run", () => {
  let server: OwnNatsServer;
  let h: SagaHarness;
  let runtime: SagaRuntime;
  let worker: RunningWorker;
  const saga = ledgerSaga("test.restart");
  const TASKS = 60;

  beforeAll(async () => {
    server = await OwnNatsServer.start(); // fails with "apt-get install nats-server" when the binary is missing
    h = await createSagaHarness("nr", { url: server.url, namespace: testNamespace("nr") });
    await createLedgerTable(h.pool);
    runtime = new SagaRuntime({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace, publishTimeoutMs: 2_000 }),
      sagas: [saga],
      ackWaitMs: 3_000,
      redeliveryBackoff: { baseMs: 100, maxMs: 1_000 },
      maxDeliver: 50, // an outage is not a poison message
    });
    runtime.start();
    worker = await startWorker({ nc: h.nc, namespace: h.namespace, service: "ledger", datacenter: "dc1", handlers: ledgerHandlers(h.pool, { delayMs: 30 }), ackWaitMs: 3_000, maxDeliver: 50 });
  });
  afterAll(async () => {
    await worker?.stop();
    await runtime?.stop();
    await h?.dispose();
    await server?.dispose();
  });

  it("loses no event, delivers none twice, and every task succeeds", async () => {
    const started = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) ids.push(await h.createTask(saga));
    // Let part of the run happen, then take NATS away.
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const { rows } = await h.pool.query("select count(*)::int as n from ledger");
      if (rows[0].n >= 30) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await server.stop();
    // Commands still work while NATS is down: more tasks are created.
    for (let i = 0; i < 20; i++) ids.push(await h.createTask(saga));
    await new Promise((r) => setTimeout(r, 2_000));
    await server.startAgain();

    const states = await h.waitFor(ids, (t) => t.status === "succeeded" || t.status === "failed", 90_000, "tasks to finish");
    expect(states.filter((s) => s.status !== "succeeded").map((s) => s.failure)).toEqual([]);
    const { rows } = await h.pool.query("select task_id, step, count(*)::int as n from ledger group by 1, 2");
    expect(rows).toHaveLength(ids.length * 3);
    expect(rows.filter((r) => r.n !== 1)).toEqual([]);

    // DV_EVENTS holds every event of the log exactly once, in log order.
    await waitForRelay(h);
    const logged = await h.store.readAll({ limit: 100_000 });
    const nc = h.nc;
    const jsm = await jetstreamManager(nc);
    const stream = h.namespace.stream(STREAMS.events);
    await jsm.consumers.add(stream, { durable_name: "CHECK", ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
    const consumer = await jetstream(nc).consumers.get(stream, "CHECK");
    const seen: string[] = [];
    while (seen.length < logged.length) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
      let got = 0;
      for await (const message of batch) {
        seen.push(message.headers?.get("Nats-Msg-Id") ?? "");
        message.ack();
        got += 1;
      }
      if (got === 0) break;
    }
    expect(seen).toEqual(logged.map((e) => e.id));
    console.log(`NATS restart: ${ids.length} tasks x 3 steps, ${logged.length} events, ${Date.now() - started} ms`);
  });
});

async function waitForRelay(h: SagaHarness): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = await h.relay.status();
    if (status.lagEvents === 0 && status.state === "live") return;
    if (Date.now() > deadline) throw new Error(`relay did not catch up: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
