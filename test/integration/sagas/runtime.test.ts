import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { STREAMS } from "../../../adapters/nats/namespace.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, type RunningWorker } from "../../../adapters/workers/worker.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { defineSaga } from "../../../sagas/runtime/types.ts";
import { createLedgerTable, ledgerHandlers, ledgerSaga } from "./fixtures/ledger.ts";
import { createSagaHarness, type SagaHarness } from "./support.ts";

/** The runtime and a worker in this process, on the shared NATS in a namespace of their own. */
describe("saga runtime: steps, retries, poison messages, redelivery", () => {
  let h: SagaHarness;
  let runtime: SagaRuntime;
  let worker: RunningWorker;
  const errors: string[] = [];
  const saga = ledgerSaga();
  const broken = defineSaga({
    kind: "test.broken",
    steps: {
      only: {
        title: "a step whose declaration throws",
        work: () => {
          throw new Error("payload rejected: datacenter must be set");
        },
      },
    },
  });

  beforeAll(async () => {
    h = await createSagaHarness("rt");
    await createLedgerTable(h.pool);
    runtime = new SagaRuntime({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
      sagas: [saga, broken],
      maxDeliver: 3,
      ackWaitMs: 5_000,
      redeliveryBackoff: { baseMs: 50, maxMs: 200 },
      retryBackoff: { baseMs: 100, maxMs: 500 },
      health: { heartbeatIntervalMs: 500, missedHeartbeats: 3 },
      onError: (error, context) => errors.push(`${context}: ${(error as Error).message}`),
    });
    runtime.start();
    worker = await startWorker({
      nc: h.nc,
      namespace: h.namespace,
      service: "ledger",
      datacenter: "dc1",
      handlers: ledgerHandlers(h.pool),
      heartbeatIntervalMs: 500,
      ackWaitMs: 5_000,
      maxDeliver: 3,
    });
  });
  afterAll(async () => {
    await worker?.stop();
    await runtime?.stop();
    await h?.dispose();
  });

  it("runs three work steps to success, each side effect once", async () => {
    const ids = await Promise.all(Array.from({ length: 10 }, () => h.createTask(saga)));
    const states = await h.waitFor(ids, (t) => t.status === "succeeded", 30_000);
    expect(states.every((s) => s.steps.every((step) => step.status === "completed" && step.attempts === 1))).toBe(true);
    const { rows } = await h.pool.query("select task_id, step, count(*)::int as n from ledger where task_id = any($1) group by 1, 2", [ids]);
    expect(rows).toHaveLength(30);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    const types = (await h.events(ids[0]!)).map((e) => e.type);
    expect(types).toEqual([
      "TaskCreated",
      "TaskStarted",
      ...["one", "two", "three"].flatMap(() => ["TaskStepStarted", "TaskWorkRequested", "TaskStepCompleted"]),
      "TaskSucceeded",
    ]);
    // Timers and outstanding work of finished tasks are gone once the runtime has seen TaskSucceeded.
    const leftovers = async () =>
      [
        ...(await h.pool.query("select task_id, kind from sagas.timers where task_id = any($1)", [ids])).rows,
        ...(await h.pool.query("select task_id, request_id from sagas.outstanding_work where task_id = any($1)", [ids])).rows,
      ];
    const until = Date.now() + 10_000;
    while ((await leftovers()).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(await leftovers()).toEqual([]);
  });

  it("retries a transient failure after a durable timer, with a new attempt", async () => {
    const id = await h.createTask(saga, { input: { fail: "transient-once" } });
    const [state] = await h.waitFor([id], (t) => t.status === "succeeded", 30_000);
    expect(state!.steps.map((s) => s.attempts)).toEqual([2, 2, 2]);
    const failed = (await h.events(id)).filter((e) => e.type === "TaskStepAttemptFailed");
    expect(failed).toHaveLength(3);
    expect(failed[0]!.data).toMatchObject({ code: "transient_failure", message: "ledger briefly unavailable", attempt: 1 });
  });

  it("fails the task with the worker's text on a permanent failure", async () => {
    const id = await h.createTask(saga, { input: { fail: "permanent" } });
    const [state] = await h.waitFor([id], (t) => t.status === "failed", 30_000);
    expect(state!.failure).toMatchObject({ step: "one", code: "refused" });
    expect(state!.failure!.reason).toContain("account closed");
  });

  it("dead-letters a poison task event and fails its task with the error's text", async () => {
    const id = await h.createTask(broken);
    const [state] = await h.waitFor([id], (t) => t.status === "failed", 30_000);
    expect(state!.failure).toMatchObject({ code: "poison_message", reason: "payload rejected: datacenter must be set" });
    const dead = await deadLetters(h, (headers) => headers["Dv-Error"] === "payload rejected: datacenter must be set");
    expect(dead.length).toBeGreaterThanOrEqual(1);
    expect(dead[0]!.subject).toBe(h.namespace.subject("dlq", "msg", "task", "evt", "step_started"));
    expect(dead[0]!.headers).toMatchObject({ "Dv-Original-Subject": "dv.task.evt.step_started", "Dv-Delivery-Count": "3" });
    expect(Number(dead[0]!.headers["Dv-Stream-Sequence"])).toBeGreaterThan(0);
  });

  it("dead-letters a work request the worker cannot process and fails the task with its text", async () => {
    const id = await h.createTask(saga, { input: { fail: "crash" } });
    const [state] = await h.waitFor([id], (t) => t.status === "failed", 30_000);
    expect(state!.failure!.code).toBe("poison_message");
    expect(state!.failure!.reason).toContain("unexpected token in payload");
    const dead = await deadLetters(h, (headers) => (headers["Dv-Request-Id"] ?? "").startsWith(`${id}:one:`));
    expect(dead).toHaveLength(1);
    expect(dead[0]!.headers["Dv-Original-Subject"]).toBe("dv.ledger.cmd.record.dc1");
  });

  it("a redelivered result and a replay of every event change nothing", async () => {
    const id = await h.createTask(saga);
    await h.waitFor([id], (t) => t.status === "succeeded", 30_000);
    const before = await h.events(id);
    const js = jetstream(h.nc);
    // The worker's result for step one arrives again (as if redelivered after the duplicate window).
    const hdrs = natsHeaders();
    hdrs.set("Dv-Request-Id", `${id}:one:1`);
    await js.publish(
      h.namespace.subject("ledger", "res", "record", "dc1"),
      JSON.stringify({ kind: "succeeded", requestId: `${id}:one:1`, taskId: id, step: "one", service: "ledger", action: "record", datacenter: "dc1", workerId: "x", at: new Date().toISOString(), output: {} }),
      { headers: hdrs },
    );
    // Every task event is delivered to the saga again: drop its durable so it starts over.
    const statsBefore = runtime.stats;
    const jsm = await jetstreamManager(h.nc);
    await jsm.consumers.delete(h.namespace.stream(STREAMS.events), h.namespace.stream("SAGAS_EVENTS"));
    const total = (await jsm.streams.info(h.namespace.stream(STREAMS.events))).state.messages;
    const deadline = Date.now() + 30_000;
    while (runtime.stats.eventsHandled - statsBefore.eventsHandled < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(runtime.stats.eventsHandled - statsBefore.eventsHandled).toBeGreaterThanOrEqual(total);
    while (runtime.stats.resultsHandled <= statsBefore.resultsHandled && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 500));
    const after = await h.events(id);
    expect(after.map((e) => e.type)).toEqual(before.map((e) => e.type));
    const { rows } = await h.pool.query("select count(*)::int as n from ledger where task_id = $1", [id]);
    expect(rows[0].n).toBe(3);
    // The replay published no work: every TaskWorkRequested it saw had been answered.
    expect(runtime.stats.workPublished).toBe(statsBefore.workPublished);
  });
});

async function deadLetters(h: SagaHarness, match: (headers: Record<string, string>) => boolean) {
  const jsm = await jetstreamManager(h.nc);
  const stream = h.namespace.stream(STREAMS.dlq);
  const info = await jsm.streams.info(stream);
  const found: Array<{ subject: string; headers: Record<string, string> }> = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const message = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (!message) continue;
    const headers: Record<string, string> = {};
    for (const [key, values] of message.header ?? []) headers[key] = values[0] ?? "";
    if (match(headers)) found.push({ subject: message.subject, headers });
  }
  return found;
}
