import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConcurrencyError, IdempotencyError } from "../../../adapters/eventstore/errors.ts";
import type { EventStoreDbEventStore } from "../../../adapters/eventstore/eventstoredb/store.ts";
import { EMPTY_HASH, chainHash, contentDigest } from "../../../adapters/eventstore/hashing.ts";
import type { NewEvent, RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { comparePositions } from "../../../adapters/eventstore/position.ts";
import { UpcasterRegistry } from "../../../adapters/eventstore/upcasting.ts";

/**
 * Checks of this adapter's own behaviour, run against the in-memory fake
 * client always and against a real server when EVENTSTORE_URL is set. They
 * assume a server shared with other data: unique stream ids, $all read from
 * the head seen at the start of a test.
 */
export function eventStoreDbChecks(
  label: string,
  make: (options?: { upcasters?: UpcasterRegistry }) => EventStoreDbEventStore,
): void {
  describe(label, () => {
    let store: EventStoreDbEventStore;
    beforeAll(() => {
      store = make();
    });
    afterAll(async () => {
      await store.close();
    });

    const actor = { kind: "user", id: "u-1" } as const;
    const scope = { tenantId: "t-1", projectId: "p-1" };
    const newStream = () => `dvtest-${randomUUID()}`;
    const event = (type: string, data: unknown, extra: Partial<NewEvent> = {}): NewEvent => ({ type, data, actor, scope, ...extra });

    it("appends to a new stream and reads the envelope back", async () => {
      const stream = newStream();
      const occurredAt = new Date("2025-01-02T03:04:05.678Z");
      const result = await store.append(
        stream,
        [event("Created", { name: "a", nested: { n: 1 } }, { occurredAt, correlationId: "c-1", datacenter: "dc1" }), event("Renamed", { name: "b" })],
        { expectedVersion: "no_stream" },
      );
      expect(result).toMatchObject({ streamId: stream, version: 1, replayed: false });
      expect(result.events.map((e) => e.streamPosition)).toEqual([0, 1]);

      const events = await store.readStream(stream);
      expect(events.map((e) => [e.type, e.streamPosition, e.data])).toEqual([
        ["Created", 0, { name: "a", nested: { n: 1 } }],
        ["Renamed", 1, { name: "b" }],
      ]);
      const [first, second] = events as [RecordedEvent, RecordedEvent];
      expect(first).toMatchObject({ correlationId: "c-1", causationId: null, actor, scope, datacenter: "dc1", schemaVersion: 1 });
      expect(first.occurredAt.toISOString()).toBe(occurredAt.toISOString());
      expect(second.correlationId).toBe(second.id); // defaults to the event's own id, as in Postgres
      expect(second.datacenter).toBeNull();
      expect(events.map((e) => e.id)).toEqual(result.events.map((e) => e.id));
      expect(events.map((e) => e.globalPosition)).toEqual(result.events.map((e) => e.globalPosition));
      expect(result.position).toEqual({ transactionId: second.transactionId, globalPosition: second.globalPosition });
      expect(first.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

      // The shared hash scheme, recomputed independently of the adapter.
      let previous: Buffer = EMPTY_HASH;
      for (const e of events) {
        const digest = contentDigest({
          streamId: stream,
          eventId: e.id,
          type: e.type,
          schemaVersion: e.schemaVersion,
          occurredAt: e.occurredAt,
          data: e.data,
          metadata: { correlationId: e.correlationId, causationId: e.causationId, actor: e.actor, scope: e.scope, datacenter: e.datacenter },
        });
        previous = chainHash(previous, e.streamPosition, digest);
        expect(e.hash).toBe(previous.toString("hex"));
      }
      expect(await store.verifyStream(stream)).toEqual({ ok: true, streamsChecked: 1, eventsChecked: 2, problems: [] });
    });

    it("checks expected versions and reports the actual one", async () => {
      const stream = newStream();
      await expect(store.append(stream, [event("A", {})], { expectedVersion: 0 })).rejects.toMatchObject({
        name: "ConcurrencyError",
        actual: "no_stream",
      });
      await expect(store.append(stream, [event("A", {})], { expectedVersion: "exists" })).rejects.toBeInstanceOf(ConcurrencyError);
      await store.append(stream, [event("A", {})], { expectedVersion: "no_stream" });
      await expect(store.append(stream, [event("B", {})], { expectedVersion: "no_stream" })).rejects.toMatchObject({ actual: 0, expected: "no_stream" });
      await expect(store.append(stream, [event("B", {})], { expectedVersion: 3 })).rejects.toMatchObject({ actual: 0, expected: 3 });
      expect((await store.append(stream, [event("B", {})], { expectedVersion: 0 })).version).toBe(1);
      expect((await store.append(stream, [event("C", {})], { expectedVersion: "exists" })).version).toBe(2);
      expect((await store.append(stream, [event("D", {})], { expectedVersion: "any" })).version).toBe(3);
      expect((await store.readStream(stream)).map((e) => e.type)).toEqual(["A", "B", "C", "D"]);
    });

    it("handles empty appends like the Postgres store", async () => {
      const stream = newStream();
      expect(await store.append(stream, [], { expectedVersion: "no_stream" })).toMatchObject({ version: -1, events: [], replayed: false });
      await expect(store.append(stream, [], { expectedVersion: 0 })).rejects.toBeInstanceOf(ConcurrencyError);
      const written = await store.append(stream, [event("A", {})], { expectedVersion: "any" });
      expect(await store.append(stream, [], { expectedVersion: 0 })).toMatchObject({ version: 0, position: written.position });
    });

    it("queues concurrent 'any' writers behind each other with an intact chain", async () => {
      const stream = newStream();
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => store.append(stream, [event("E", { i, k: 0 }), event("E", { i, k: 1 })], { expectedVersion: "any" })),
      );
      const versions = results.map((r) => r.version).sort((a, b) => a - b);
      expect(versions).toEqual([1, 3, 5, 7, 9, 11, 13, 15]);
      for (const result of results) {
        expect(result.events[1]!.streamPosition).toBe(result.events[0]!.streamPosition + 1);
      }
      const events = await store.readStream(stream);
      expect(events).toHaveLength(16);
      expect(await store.verifyStream(stream)).toMatchObject({ ok: true, eventsChecked: 16 });
    });

    it("lets exactly one of several writers expecting the same version win", async () => {
      const stream = newStream();
      await store.append(stream, [event("A", {})], { expectedVersion: "no_stream" });
      const outcomes = await Promise.allSettled(
        Array.from({ length: 5 }, (_, i) => store.append(stream, [event("B", { i })], { expectedVersion: 0 })),
      );
      expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
      for (const outcome of outcomes) {
        if (outcome.status === "rejected") expect(outcome.reason).toMatchObject({ name: "ConcurrencyError", actual: 1 });
      }
    });

    it("treats a retry with the same ids as a replay and refuses a partial overlap", async () => {
      const stream = newStream();
      const batch = [event("A", { n: 1 }, { id: randomUUID() }), event("B", { n: 2 }, { id: randomUUID() })];
      const first = await store.append(stream, batch, { expectedVersion: "no_stream" });
      await store.append(stream, [event("C", {})], { expectedVersion: 1 });
      const retry = await store.append(stream, batch, { expectedVersion: "no_stream" });
      expect(retry).toMatchObject({ replayed: true, version: first.version, position: first.position });
      expect(retry.events).toEqual(first.events);
      expect(await store.readStream(stream)).toHaveLength(3);

      await expect(store.append(stream, [batch[0]!, event("D", {}, { id: randomUUID() })], { expectedVersion: "any" })).rejects.toBeInstanceOf(
        IdempotencyError,
      );
      const id = randomUUID();
      await expect(store.append(stream, [event("E", {}, { id }), event("F", {}, { id })], { expectedVersion: "any" })).rejects.toBeInstanceOf(
        IdempotencyError,
      );
      expect(await store.readStream(stream)).toHaveLength(3);
    });

    it("reads streams forward, backward, from a position, with a limit", async () => {
      const stream = newStream();
      await store.append(stream, Array.from({ length: 5 }, (_, i) => event("E", { i })), { expectedVersion: "no_stream" });
      const positions = (events: RecordedEvent[]) => events.map((e) => e.streamPosition);
      expect(positions(await store.readStream(stream))).toEqual([0, 1, 2, 3, 4]);
      expect(positions(await store.readStream(stream, { from: 2 }))).toEqual([2, 3, 4]);
      expect(positions(await store.readStream(stream, { from: 1, limit: 2 }))).toEqual([1, 2]);
      expect(positions(await store.readStream(stream, { direction: "backward" }))).toEqual([4, 3, 2, 1, 0]);
      expect(positions(await store.readStream(stream, { direction: "backward", from: 2 }))).toEqual([2, 1, 0]);
      expect(positions(await store.readStream(stream, { direction: "backward", limit: 2 }))).toEqual([4, 3]);
      expect(await store.readStream(stream, { from: 9 })).toEqual([]);
      expect(await store.readStream(stream, { limit: 0 })).toEqual([]);
      expect(await store.readStream(newStream())).toEqual([]);
    });

    it("reads $all after a cursor, in order, without system events, page by page", async () => {
      const head = await store.headPosition();
      const streams = [newStream(), newStream(), newStream()];
      const written: string[] = [];
      for (let round = 0; round < 3; round++) {
        for (const stream of streams) {
          const result = await store.append(stream, [event("E", { round })], { expectedVersion: "any" });
          written.push(...result.events.map((e) => e.id));
        }
      }
      const last = await store.append(streams[0]!, [event("Last", {})], { expectedVersion: "any" });
      written.push(last.events[0]!.id);
      expect(await store.headPosition()).toEqual(last.position);

      const all = (await store.readAll({ after: head })).filter((e) => streams.includes(e.streamId));
      expect(all.map((e) => e.id)).toEqual(written);
      for (let i = 1; i < all.length; i++) expect(comparePositions(all[i - 1]!, all[i]!)).toBeLessThan(0);
      expect(all.every((e) => !e.type.startsWith("$") && !e.streamId.startsWith("$"))).toBe(true);

      const paged: RecordedEvent[] = [];
      for (let cursor = head; ; ) {
        const page = await store.readAll({ after: cursor, limit: 2 });
        expect(page.length).toBeLessThanOrEqual(2);
        if (page.length === 0) break;
        paged.push(...page);
        cursor = page[page.length - 1]!;
      }
      expect(paged.filter((e) => streams.includes(e.streamId)).map((e) => e.id)).toEqual(written);
      expect((await store.readAll({ after: last.position })).filter((e) => streams.includes(e.streamId))).toEqual([]);
    });

    it("subscribes: catch-up from a cursor, then live, until stopped", async () => {
      const stream = newStream();
      const head = await store.headPosition();
      await store.append(stream, [event("A", {}), event("B", {})], { expectedVersion: "no_stream" });
      const subscription = store.subscribe({ after: head });
      const seen: string[] = [];
      const done = (async () => {
        for await (const e of subscription) {
          if (e.streamId !== stream) continue;
          seen.push(e.type);
          if (seen.length === 2) await store.append(stream, [event("C", {})], { expectedVersion: 1 });
          if (seen.length === 3) await subscription.stop();
        }
      })();
      await withTimeout(done, 15_000);
      expect(seen).toEqual(["A", "B", "C"]);
    });

    it("upcasts old versions on read", async () => {
      const upcasters = new UpcasterRegistry([{ type: "Renamed", fromVersion: 1, upcast: (data) => ({ ...(data as object), v2: true }) }]);
      const upcasting = make({ upcasters });
      try {
        const stream = newStream();
        await store.append(stream, [event("Renamed", { name: "x" })], { expectedVersion: "no_stream" });
        const [read] = await upcasting.readStream(stream);
        expect(read).toMatchObject({ schemaVersion: 2, data: { name: "x", v2: true } });
        expect(await upcasting.verifyStream(stream)).toMatchObject({ ok: true });
      } finally {
        await upcasting.close();
      }
    });

    it("verifies every stream it wrote", async () => {
      const streams = [newStream(), newStream()];
      for (const stream of streams) await store.append(stream, [event("A", {}), event("B", {})], { expectedVersion: "no_stream" });
      const report = await store.verifyAll();
      expect(report.streamsChecked).toBeGreaterThanOrEqual(2);
      expect(report.problems.filter((p) => streams.includes(p.streamId))).toEqual([]);
      expect(await store.verifyStream(newStream())).toEqual({ ok: true, streamsChecked: 0, eventsChecked: 0, problems: [] });
    });
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
