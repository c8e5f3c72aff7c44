import { v7 as uuidv7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConcurrencyError, IdempotencyError } from "../../../adapters/eventstore/errors.ts";
import type { EventStore, LogPosition, NewEvent, RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { comparePositions } from "../../../adapters/eventstore/position.ts";
import { UpcasterRegistry } from "../../../adapters/eventstore/upcasting.ts";

/** What a contract run needs from an adapter. */
export interface EventStoreHarness {
  /** A store; `upcasters` wires an upcaster registry in. Stores are closed by the suite. */
  createStore(options?: { upcasters?: UpcasterRegistry }): Promise<EventStore>;
  /** Releases whatever the harness set up (databases, connections). */
  dispose(): Promise<void>;
}

const actor = { kind: "user", id: "ada" } as const;
const scope = { tenantId: "t-contract" };

export function event(type: string, data: unknown = {}, extra: Partial<NewEvent> = {}): NewEvent {
  return { type, data, actor, scope, ...extra };
}

/** Unique per run, so the suite also works against a long-lived server (EventStoreDB). */
function streamName(prefix: string): string {
  return `${prefix}-${uuidv7()}`;
}

async function collect(iterable: AsyncIterable<RecordedEvent>, count: number, filter: (e: RecordedEvent) => boolean) {
  const seen: RecordedEvent[] = [];
  for await (const e of iterable) {
    if (filter(e)) seen.push(e);
    if (seen.length >= count) break;
  }
  return seen;
}

/**
 * A log may hold back just-committed events while older transactions are open
 * (Postgres: any write transaction on the server). Reads that must see a write wait for it.
 */
async function untilReadable(store: EventStore, position: LogPosition, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (comparePositions(await store.headPosition(), position) < 0) {
    if (Date.now() > deadline) throw new Error("written events did not become readable in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function describeEventStoreContract(adapterName: string, makeHarness: () => Promise<EventStoreHarness>): void {
  describe(`event store contract: ${adapterName}`, () => {
    let harness: EventStoreHarness;
    let store: EventStore;
    const stores: EventStore[] = [];

    beforeAll(async () => {
      harness = await makeHarness();
      store = await harness.createStore();
      stores.push(store);
    });
    afterAll(async () => {
      for (const s of stores) await s.close();
      await harness?.dispose();
    });

    describe("append and optimistic concurrency", () => {
      it("creates a stream with no_stream and numbers events from 0", async () => {
        const stream = streamName("order");
        const result = await store.append(stream, [event("A"), event("B")], { expectedVersion: "no_stream" });
        expect(result.version).toBe(1);
        expect(result.replayed).toBe(false);
        expect(result.events.map((e) => e.streamPosition)).toEqual([0, 1]);
        const read = await store.readStream(stream);
        expect(read.map((e) => [e.type, e.streamPosition])).toEqual([["A", 0], ["B", 1]]);
        expect(read[1]!.globalPosition).toBe(result.position.globalPosition);
      });

      it("refuses no_stream when the stream exists, reporting its version", async () => {
        const stream = streamName("order");
        await store.append(stream, [event("A")], { expectedVersion: "no_stream" });
        const error = await store.append(stream, [event("B")], { expectedVersion: "no_stream" }).catch((e) => e);
        expect(error).toBeInstanceOf(ConcurrencyError);
        expect(error).toMatchObject({ streamId: stream, expected: "no_stream", actual: 0 });
      });

      it("refuses a stale numeric version and accepts the current one", async () => {
        const stream = streamName("order");
        await store.append(stream, [event("A"), event("B")], { expectedVersion: "no_stream" });
        const error = await store.append(stream, [event("C")], { expectedVersion: 0 }).catch((e) => e);
        expect(error).toBeInstanceOf(ConcurrencyError);
        expect(error).toMatchObject({ expected: 0, actual: 1 });
        const ok = await store.append(stream, [event("C")], { expectedVersion: 1 });
        expect(ok.version).toBe(2);
      });

      it("refuses a numeric version on a missing stream with actual no_stream", async () => {
        const error = await store.append(streamName("order"), [event("A")], { expectedVersion: 0 }).catch((e) => e);
        expect(error).toBeInstanceOf(ConcurrencyError);
        expect(error).toMatchObject({ expected: 0, actual: "no_stream" });
      });

      it("refuses exists on a missing stream and accepts it on an existing one", async () => {
        const stream = streamName("order");
        const error = await store.append(stream, [event("A")], { expectedVersion: "exists" }).catch((e) => e);
        expect(error).toBeInstanceOf(ConcurrencyError);
        expect(error).toMatchObject({ expected: "exists", actual: "no_stream" });
        await store.append(stream, [event("A")], { expectedVersion: "no_stream" });
        const ok = await store.append(stream, [event("B")], { expectedVersion: "exists" });
        expect(ok.version).toBe(1);
      });

      it("lets any writer append whatever the version", async () => {
        const stream = streamName("order");
        expect((await store.append(stream, [event("A")], { expectedVersion: "any" })).version).toBe(0);
        expect((await store.append(stream, [event("B")], { expectedVersion: "any" })).version).toBe(1);
      });

      it("queues concurrent any-writers to one hot stream instead of failing them", async () => {
        const stream = streamName("hot");
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) => store.append(stream, [event("Tick", { i })], { expectedVersion: "any" })),
        );
        expect(results.map((r) => r.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
        expect(await store.readStream(stream)).toHaveLength(40);
      });

      it("lets exactly one of many concurrent creators win", async () => {
        const stream = streamName("unique");
        const outcomes = await Promise.allSettled(
          Array.from({ length: 10 }, () => store.append(stream, [event("Claimed")], { expectedVersion: "no_stream" })),
        );
        expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
        for (const o of outcomes.filter((o) => o.status === "rejected")) {
          expect((o as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError);
        }
      });

      it("writes nothing for a refused append", async () => {
        const stream = streamName("order");
        await store.append(stream, [event("A")], { expectedVersion: "no_stream" });
        await store.append(stream, [event("X"), event("Y")], { expectedVersion: 5 }).catch(() => {});
        expect((await store.readStream(stream)).map((e) => e.type)).toEqual(["A"]);
      });
    });

    describe("idempotent retries", () => {
      it("treats a repeat of the same event ids as a no-op returning the original positions", async () => {
        const stream = streamName("retry");
        const events = [event("A", {}, { id: uuidv7() }), event("B", {}, { id: uuidv7() })];
        const first = await store.append(stream, events, { expectedVersion: "no_stream" });
        const again = await store.append(stream, events, { expectedVersion: "no_stream" });
        expect(again.replayed).toBe(true);
        expect(again.version).toBe(first.version);
        expect(again.events).toEqual(first.events);
        expect(await store.readStream(stream)).toHaveLength(2);
      });

      it("refuses a partial overlap of event ids", async () => {
        const stream = streamName("retry");
        const a = event("A", {}, { id: uuidv7() });
        await store.append(stream, [a], { expectedVersion: "no_stream" });
        const error = await store
          .append(stream, [a, event("B", {}, { id: uuidv7() })], { expectedVersion: "any" })
          .catch((e) => e);
        expect(error).toBeInstanceOf(IdempotencyError);
        expect(await store.readStream(stream)).toHaveLength(1);
      });
    });

    describe("reads", () => {
      it("reads a stream forwards and backwards, from a position, with a limit", async () => {
        const stream = streamName("read");
        await store.append(stream, ["A", "B", "C", "D"].map((t) => event(t)), { expectedVersion: "no_stream" });
        const types = (events: RecordedEvent[]) => events.map((e) => e.type);
        expect(types(await store.readStream(stream))).toEqual(["A", "B", "C", "D"]);
        expect(types(await store.readStream(stream, { from: 2 }))).toEqual(["C", "D"]);
        expect(types(await store.readStream(stream, { limit: 2 }))).toEqual(["A", "B"]);
        expect(types(await store.readStream(stream, { direction: "backward" }))).toEqual(["D", "C", "B", "A"]);
        expect(types(await store.readStream(stream, { direction: "backward", from: 1 }))).toEqual(["B", "A"]);
        expect(types(await store.readStream(stream, { direction: "backward", limit: 1 }))).toEqual(["D"]);
        expect(await store.readStream(streamName("missing"))).toEqual([]);
      });

      it("keeps the whole envelope", async () => {
        const stream = streamName("envelope");
        const id = uuidv7();
        const occurredAt = new Date("2026-01-02T03:04:05.678Z");
        await store.append(
          stream,
          [
            {
              id,
              type: "Placed",
              schemaVersion: 3,
              data: { nested: { list: [1, "two", null] }, unicode: "blåbær" },
              occurredAt,
              correlationId: "corr-1",
              causationId: "cause-1",
              actor: { kind: "service", id: "maskin" },
              scope: { tenantId: "t1", projectId: "p1", environmentId: "e1" },
              datacenter: "osl1",
            },
          ],
          { expectedVersion: "no_stream" },
        );
        const [read] = await store.readStream(stream);
        expect(read).toMatchObject({
          id,
          type: "Placed",
          schemaVersion: 3,
          streamId: stream,
          streamPosition: 0,
          data: { nested: { list: [1, "two", null] }, unicode: "blåbær" },
          correlationId: "corr-1",
          causationId: "cause-1",
          actor: { kind: "service", id: "maskin" },
          scope: { tenantId: "t1", projectId: "p1", environmentId: "e1" },
          datacenter: "osl1",
        });
        expect(read!.occurredAt.toISOString()).toBe(occurredAt.toISOString());
        expect(read!.hash).toMatch(/^[0-9a-f]{64}$/);
      });

      it("reads the whole log in order after a cursor", async () => {
        const start = await store.headPosition();
        const stream = streamName("log");
        await store.append(stream, [event("A"), event("B")], { expectedVersion: "no_stream" });
        const last = await store.append(stream, [event("C")], { expectedVersion: 1 });
        await untilReadable(store, last.position);
        const mine = (await store.readAll({ after: start, limit: 1000 })).filter((e) => e.streamId === stream);
        expect(mine.map((e) => e.type)).toEqual(["A", "B", "C"]);
        const rest = await store.readAll({ after: { transactionId: mine[0]!.transactionId, globalPosition: mine[0]!.globalPosition } });
        expect(rest.filter((e) => e.streamId === stream).map((e) => e.type)).toEqual(["B", "C"]);
        const all = await store.readAll({ after: start, limit: 1000 });
        for (let i = 1; i < all.length; i++) expect(comparePositions(all[i - 1]!, all[i]!)).toBeLessThan(0);
      });
    });

    describe("upcasting", () => {
      it("upcasts an old schema version on read without rewriting what is stored", async () => {
        const upcasters = new UpcasterRegistry([
          { type: "Renamed", fromVersion: 1, upcast: (d) => ({ ...(d as object), displayName: (d as { name: string }).name }) },
          { type: "Renamed", fromVersion: 2, upcast: (d) => ({ ...(d as object), reason: "unknown" }) },
        ]);
        const upcasting = await harness.createStore({ upcasters });
        stores.push(upcasting);
        const stream = streamName("upcast");
        await store.append(stream, [event("Renamed", { name: "old" }, { schemaVersion: 1 })], { expectedVersion: "no_stream" });
        const [upcast] = await upcasting.readStream(stream);
        expect(upcast).toMatchObject({ schemaVersion: 3, data: { name: "old", displayName: "old", reason: "unknown" } });
        const [raw] = await store.readStream(stream);
        expect(raw).toMatchObject({ schemaVersion: 1, data: { name: "old" } });
        expect((await upcasting.verifyStream(stream)).ok).toBe(true);
      });
    });

    describe("subscriptions", () => {
      it("catches up, then delivers live events in order", async () => {
        const start = await store.headPosition();
        const stream = streamName("sub");
        await store.append(stream, [event("A"), event("B")], { expectedVersion: "no_stream" });
        const subscription = store.subscribe({ after: start, batchSize: 1 });
        const received = collect(subscription, 5, (e) => e.streamId === stream);
        await new Promise((resolve) => setTimeout(resolve, 100));
        await store.append(stream, [event("C")], { expectedVersion: 1 });
        await store.append(stream, [event("D"), event("E")], { expectedVersion: 2 });
        expect((await received).map((e) => e.type)).toEqual(["A", "B", "C", "D", "E"]);
        await subscription.stop();
      });

      it("stops while waiting for events", async () => {
        const subscription = store.subscribe({ after: await store.headPosition() });
        const iterating = (async () => {
          for await (const _ of subscription) {
            /* nothing new arrives */
          }
          return "ended";
        })();
        await new Promise((resolve) => setTimeout(resolve, 50));
        await subscription.stop();
        expect(await iterating).toBe("ended");
      });
    });

    describe("hash chain", () => {
      it("verifies an untouched stream", async () => {
        const stream = streamName("chain");
        await store.append(stream, [event("A", { n: 1 }), event("B", { n: 2.5 })], { expectedVersion: "no_stream" });
        await store.append(stream, [event("C", { s: "x" })], { expectedVersion: 1 });
        const report = await store.verifyStream(stream);
        expect(report).toMatchObject({ ok: true, eventsChecked: 3, problems: [] });
        const [a, b] = await store.readStream(stream);
        expect(a!.hash).not.toBe(b!.hash);
      });
    });
  });
}
