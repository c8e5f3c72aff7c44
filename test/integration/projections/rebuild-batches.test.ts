import { describe, expect, it } from "vitest";
import type { EventStore, LogPosition, ReadAllOptions, RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { START } from "../../../adapters/eventstore/port.ts";
import { comparePositions } from "../../../adapters/eventstore/position.ts";
import { BatchSizer, INITIAL_REBUILD_BATCH_SIZE, LogReader } from "../../../projections/rebuild.ts";

/** How rebuild.ts sizes replay batches and reads the log ahead of them; no database needed. */

function event(n: number): RecordedEvent {
  return {
    id: `e${n}`,
    type: "T",
    schemaVersion: 1,
    streamId: "s",
    streamPosition: n,
    globalPosition: BigInt(n),
    transactionId: BigInt(n),
    occurredAt: new Date(0),
    data: {},
    correlationId: "c",
    causationId: null,
    actor: { kind: "system", id: "test" },
    scope: { tenantId: "t" },
    datacenter: null,
    hash: "",
  };
}

/** A log of `size` events; `heldBack(after)` returns how many events after `after` a read may not see yet. */
function scriptedStore(size: number, heldBack: (read: number) => number = () => 0) {
  const log = Array.from({ length: size }, (_, i) => event(i + 1));
  const reads: Array<{ after: LogPosition; limit: number; returned: number }> = [];
  const store = {
    async readAll(options: ReadAllOptions = {}) {
      const after = options.after ?? START;
      const rest = log.filter((e) => comparePositions(e, after) > 0);
      const visible = rest.slice(0, Math.max(0, rest.length - heldBack(reads.length)));
      const events = visible.slice(0, options.limit ?? 1000);
      reads.push({ after, limit: options.limit ?? 1000, returned: events.length });
      await new Promise((resolve) => setTimeout(resolve, 1));
      return events;
    },
  } as unknown as EventStore;
  return { store, reads, log };
}

async function drain(reader: LogReader, limit: number): Promise<RecordedEvent[][]> {
  const batches: RecordedEvent[][] = [];
  for (;;) {
    const batch = await reader.take(limit);
    if (batch.length === 0) break;
    batches.push(batch);
    reader.prefetch(limit); // as the replay loop does, before applying the batch
  }
  await reader.close();
  return batches;
}

describe("rebuild batches", () => {
  it("start at the old batch size, double while fast, shrink to what fits after a slow one", () => {
    const sizer = new BatchSizer(5_000, 500);
    expect(sizer.limit).toBe(INITIAL_REBUILD_BATCH_SIZE);
    sizer.record(500, 100);
    expect(sizer.limit).toBe(1_000);
    sizer.record(1_000, 200);
    expect(sizer.limit).toBe(2_000);
    sizer.record(2_000, 300); // between half and the bound: keep
    expect(sizer.limit).toBe(2_000);
    sizer.record(2_000, 2_000); // 4x too slow: a quarter fits
    expect(sizer.limit).toBe(500);
    sizer.record(120, 10); // a short (head) batch does not grow the limit
    expect(sizer.limit).toBe(500);
    sizer.record(500, 100);
    sizer.record(1_000, 100);
    sizer.record(2_000, 100);
    sizer.record(4_000, 100);
    expect(sizer.limit).toBe(5_000); // never above batchSize
    expect(new BatchSizer(20, 500).limit).toBe(20); // an explicit small batchSize is used from the first batch
    const crawling = new BatchSizer(1_000, 100);
    crawling.record(500, 100_000);
    expect(crawling.limit).toBe(1);
  });

  it("read ahead in order, nothing twice, nothing skipped, in batches of the current limit", async () => {
    const { store, log } = scriptedStore(1_003);
    const reader = new LogReader(store, START, 100);
    const batches = await drain(reader, 30);
    expect(batches.flat().map((e) => e.id)).toEqual(log.map((e) => e.id));
    expect(batches.slice(0, -1).every((b) => b.length <= 30)).toBe(true);
  });

  it("assemble a batch bigger than a read from several reads, all but the first made ahead", async () => {
    const { store, reads, log } = scriptedStore(1_003);
    const reader = new LogReader(store, START, 100);
    const batches = await drain(reader, 250);
    expect(batches.flat().map((e) => e.id)).toEqual(log.map((e) => e.id));
    expect(batches.map((b) => b.length)).toEqual([250, 250, 250, 250, 3]);
    expect(reads.every((r) => r.limit === 100)).toBe(true);
    // The short read was made ahead (overlapping a batch), so a clean one confirmed the head.
    expect(reads.map((r) => r.returned).slice(-2)).toEqual([3, 0]);
  });

  it("do not take a short read made while a batch was open for the head: the next read is a clean one", async () => {
    // Read 2 (a prefetch, overlapping "our" batch) sees only 2 of the 40 events after it, as when an
    // open transaction holds readers back; every other read sees the whole log.
    const { store, reads, log } = scriptedStore(50, (read) => (read === 2 ? 38 : 0));
    const reader = new LogReader(store, START, 5);
    const batches = await drain(reader, 5);
    expect(batches.flat().map((e) => e.id)).toEqual(log.map((e) => e.id));
    expect(reads.slice(0, 3).map((r) => r.returned)).toEqual([5, 5, 2]);
    // The short prefetch did not end the replay: the next read started right after what it returned.
    expect(reads[3]!.after).toEqual({ transactionId: 12n, globalPosition: 12n });
    expect(reads[3]!.returned).toBe(5);
    // The replay ended on a short read, after every event.
    expect(reads.at(-1)!.returned).toBeLessThan(5);
    expect(batches.flat()).toHaveLength(50);
  });

  it("stop at a short clean read, and wait for a read in flight before closing", async () => {
    const { store, reads } = scriptedStore(12);
    const reader = new LogReader(store, START, 5);
    expect((await reader.take(5)).length).toBe(5);
    reader.prefetch(5);
    await reader.close(); // an abort between batches: the prefetch settles before the rebuild returns
    expect(reads).toHaveLength(2);
  });

  it("report a failed read to the batch that needs it", async () => {
    let calls = 0;
    const store = {
      async readAll() {
        calls += 1;
        if (calls === 2) throw new Error("connection lost");
        return [event(calls)];
      },
    } as unknown as EventStore;
    const reader = new LogReader(store, START, 1);
    expect((await reader.take(1)).map((e) => e.id)).toEqual(["e1"]);
    reader.prefetch(1);
    await expect(reader.take(1)).rejects.toThrow("connection lost");
  });
});
