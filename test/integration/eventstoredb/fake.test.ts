import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { EventStoreDbEventStore, createEventStoreDbStoreFromEnv } from "../../../adapters/eventstore/eventstoredb/store.ts";
import type { NewEvent } from "../../../adapters/eventstore/port.ts";
import { eventStoreDbChecks } from "./checks.ts";
import { FakeEsdbClient } from "./fake-client.ts";

/** The adapter's logic against an in-memory stand-in for the client; see fake-client.ts for what it mimics. */
const shared = new FakeEsdbClient();
eventStoreDbChecks("EventStoreDbEventStore (in-memory fake client)", (options = {}) => {
  return new EventStoreDbEventStore({ connectionString: "esdb://fake", client: shared.asClient(), ...options });
});

describe("EventStoreDbEventStore against the fake only", () => {
  const actor = { kind: "service", id: "svc" } as const;
  const scope = { tenantId: "t-2" };
  const event = (type: string, data: unknown, extra: Partial<NewEvent> = {}): NewEvent => ({ type, data, actor, scope, ...extra });
  const setup = () => {
    const fake = new FakeEsdbClient();
    return { fake, store: new EventStoreDbEventStore({ connectionString: "esdb://fake", client: fake.asClient() }) };
  };

  it("skips system and foreign events in $all and in the head position", async () => {
    const { fake, store } = setup();
    await store.append("s-1", [event("A", {})], { expectedVersion: "no_stream" });
    fake.writeSystemEvent("$$s-1", "$metadata");
    fake.writeForeignEvent("other-app", "Thing");
    const second = await store.append("s-2", [event("B", {})], { expectedVersion: "no_stream" });
    fake.writeSystemEvent("$stats-127.0.0.1:2113", "$statsCollected");
    fake.writeForeignEvent("other-app", "Thing");
    expect((await store.readAll()).map((e) => e.type)).toEqual(["A", "B"]);
    expect(await store.headPosition()).toEqual(second.position);
    expect(await store.verifyAll()).toMatchObject({ ok: true, streamsChecked: 2, eventsChecked: 2 });
    await expect(store.readStream("other-app")).rejects.toMatchObject({ name: "ForeignEventError" });
    await expect(store.append("other-app", [event("C", {})], { expectedVersion: "any" })).rejects.toMatchObject({ name: "ForeignEventError" });
  });

  it("pages through long runs of system events", async () => {
    const { fake, store } = setup();
    const first = await store.append("s-1", [event("A", {})], { expectedVersion: "no_stream" });
    for (let i = 0; i < 2500; i++) fake.writeSystemEvent("$stats-x", "$statsCollected");
    const second = await store.append("s-1", [event("B", {})], { expectedVersion: 0 });
    for (let i = 0; i < 2500; i++) fake.writeSystemEvent("$stats-x", "$statsCollected");
    expect((await store.readAll({ after: first.position, limit: 1 })).map((e) => e.type)).toEqual(["B"]);
    expect((await store.readAll()).map((e) => e.type)).toEqual(["A", "B"]);
    expect(await store.headPosition()).toEqual(second.position);
    const empty = new EventStoreDbEventStore({ connectionString: "esdb://fake", client: new FakeEsdbClient().asClient() });
    expect(await empty.headPosition()).toEqual({ transactionId: 0n, globalPosition: 0n });
  });

  it("finds tampered content, digests and hashes", async () => {
    const { fake, store } = setup();
    await store.append("s-1", [event("A", { n: 1 }), event("B", { n: 2 }), event("C", { n: 3 })], { expectedVersion: "no_stream" });
    await store.append("s-2", [event("A", { n: 1 })], { expectedVersion: "no_stream" });
    fake.tamper("s-1", 0, (record) => {
      record.data = { n: 100 };
    });
    fake.tamper("s-1", 1, (record) => {
      record.metadata.hash = "00".repeat(32);
    });
    const report = await store.verifyStream("s-1");
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => [p.streamPosition, p.kind])).toEqual([
      [0, "content_mismatch"],
      [1, "chain_broken"],
      [2, "chain_broken"],
    ]);
    const all = await store.verifyAll();
    expect(all).toMatchObject({ ok: false, streamsChecked: 2, eventsChecked: 4 });
    expect(all.problems).toEqual(report.problems);
  });

  it("reports a concurrent identical retry that ESDB absorbed as a replay", async () => {
    const { store } = setup();
    const ids = [randomUUID(), randomUUID()];
    const make = (at: string) => ids.map((id, i) => event("A", { i }, { id, occurredAt: new Date(at) }));
    const [a, b] = await Promise.all([
      store.append("s-1", make("2025-01-01T00:00:00Z"), { expectedVersion: "no_stream" }),
      store.append("s-1", make("2025-01-01T00:00:01Z"), { expectedVersion: "no_stream" }),
    ]);
    expect([a.replayed, b.replayed].sort()).toEqual([false, true]);
    expect(a.events).toEqual(b.events);
    expect(await store.readStream("s-1")).toHaveLength(2);
  });

  it("gives up on a hopelessly contended stream with a ConcurrencyError", async () => {
    const fake = new FakeEsdbClient();
    const store = new EventStoreDbEventStore({ connectionString: "esdb://fake", client: fake.asClient(), maxAppendAttempts: 3 });
    await store.append("s-1", [event("A", {})], { expectedVersion: "no_stream" });
    const original = fake.appendToStream.bind(fake);
    // Another writer always gets in first (here: a copy of our own event under a new id).
    fake.appendToStream = async (name, events, options) => {
      const copy = (Array.isArray(events) ? events : [events]).map((e) => ({ ...e, id: randomUUID() }));
      await original(name, copy, { expectedRevision: "any" });
      return original(name, events, options);
    };
    await expect(store.append("s-1", [event("B", {})], { expectedVersion: "any" })).rejects.toMatchObject({ name: "ConcurrencyError" });
    expect(fake.appendCalls).toBe(1 + 3 * 2);
  });

  it("rejects what ESDB would misread: $-prefixed types and streams, non-UUID ids", async () => {
    const { store } = setup();
    await expect(store.append("$system", [event("A", {})], { expectedVersion: "any" })).rejects.toBeInstanceOf(TypeError);
    await expect(store.append("s", [event("$A", {})], { expectedVersion: "any" })).rejects.toBeInstanceOf(TypeError);
    await expect(store.append("s", [event("A", {}, { id: "nope" })], { expectedVersion: "any" })).rejects.toBeInstanceOf(TypeError);
    await expect(store.append("s", [event("A", {})], { expectedVersion: -2 })).rejects.toBeInstanceOf(RangeError);
  });

  it("stops open subscriptions and disposes the client on close", async () => {
    const { fake, store } = setup();
    const subscription = store.subscribe();
    const iteration = (async () => {
      const seen: string[] = [];
      for await (const e of subscription) seen.push(e.type);
      return seen;
    })();
    await store.append("s-1", [event("A", {})], { expectedVersion: "no_stream" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await store.close();
    expect(await iteration).toEqual(["A"]);
    expect(fake.disposed).toBe(true);
    await expect(store.readAll()).rejects.toThrow(/closed/);
  });

  it("is built from EVENTSTORE_URL only when it is set", async () => {
    expect(createEventStoreDbStoreFromEnv({ env: {} })).toBeUndefined();
    expect(createEventStoreDbStoreFromEnv({ env: { EVENTSTORE_URL: "  " } })).toBeUndefined();
    const store = createEventStoreDbStoreFromEnv({ env: { EVENTSTORE_URL: "esdb://localhost:1?tls=false" } });
    expect(store).toBeInstanceOf(EventStoreDbEventStore);
    await store!.close();
  });
});
