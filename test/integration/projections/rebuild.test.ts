import { sql } from "kysely";
import { formatPosition } from "../../../adapters/eventstore/position.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCheckpoint, readRebuild } from "../../../projections/checkpoints.ts";
import { projectionChecksum } from "../../../projections/checksum.ts";
import { ChecksumMismatchError, RebuildInProgressError } from "../../../projections/errors.ts";
import { rebuildProjection, type RebuildProgress } from "../../../projections/rebuild.ts";
import { ProjectionRunner } from "../../../projections/runner.ts";
import { createProjectionTables, ensureProjectionSchemas } from "../../../projections/setup.ts";
import { probeProjection } from "./fixtures/probe.ts";
import { allReadable, appendMany, createHarness, newEvent, type ProjectionHarness } from "./support.ts";

let h: ProjectionHarness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(async () => {
  await h?.dispose();
});

const mirror = probeProjection({ name: "mirror" });

async function expectExactlyOnce(schema: string): Promise<void> {
  const { rows } = await sql<{ missing: string; extra: string; duplicated: string }>`
    select
      (select count(*) from eventstore.events e
         where not exists (select 1 from ${sql.table(`${schema}.applied`)} a where a.event_id = e.event_id)) as missing,
      (select count(*) from ${sql.table(`${schema}.applied`)} a
         where not exists (select 1 from eventstore.events e where e.event_id = a.event_id)) as extra,
      (select count(*) from ${sql.table(`${schema}.applied`)} a where a.count <> 1) as duplicated`.execute(h.db);
  expect(rows[0]).toEqual({ missing: "0", extra: "0", duplicated: "0" });
}

/** Everything a reader can observe of a schema: columns, indexes, rows. */
async function snapshot(schema: string) {
  const columns = await sql`select table_name, column_name, ordinal_position, data_type, is_nullable, column_default
    from information_schema.columns where table_schema = ${schema} order by table_name, ordinal_position`.execute(h.db);
  const indexes = await sql`select tablename, indexname, replace(indexdef, ${schema + "."}, '') as def
    from pg_indexes where schemaname = ${schema} order by indexname`.execute(h.db);
  const applied = await sql`select * from ${sql.table(`${schema}.applied`)} order by event_id`.execute(h.db);
  const streams = await sql`select * from ${sql.table(`${schema}.streams`)} order by stream_id`.execute(h.db);
  return { columns: columns.rows, indexes: indexes.rows, applied: applied.rows, streams: streams.rows };
}

/** Appends one event every few ms until stopped. */
function startWriters(): { stop(): Promise<number> } {
  let running = true;
  let written = 0;
  const loop = (async () => {
    while (running) {
      await h.store.append(`w-${written % 3}`, [newEvent("Written", { n: written })], { expectedVersion: "any" });
      written += 1;
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return written;
    },
  };
}

/**
 * Reads the served model over and over, one statement (one snapshot) at a
 * time: the rows must always match the checkpoint's event count (a complete
 * model at its position), and the query must never fail (no missing table).
 */
function startReader(): { stop(): Promise<{ reads: number; problems: string[] }> } {
  let running = true;
  let reads = 0;
  const problems: string[] = [];
  const loop = (async () => {
    while (running) {
      try {
        const { rows } = await sql<{ rows: string; applied: string; total: string }>`
          select (select count(*) from mirror.applied) as rows,
                 (select coalesce(sum(events), 0) from mirror.streams) as total,
                 (select events_applied from projections.checkpoints where name = 'mirror') as applied`.execute(h.db);
        const row = rows[0]!;
        if (row.rows !== row.applied || row.total !== row.applied) problems.push(`saw ${JSON.stringify(row)}`);
      } catch (error) {
        problems.push((error as Error).message);
      }
      reads += 1;
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { reads, problems };
    },
  };
}

describe("rebuild", () => {
  it("rebuilds beside the live model while writers append, then swaps atomically with equal checksums", async () => {
    await appendMany(h.store, 300, { streams: 6, perAppend: 3 });
    const runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [mirror], batchSize: 50 });
    await runner.start();
    try {
      await allReadable(h);
      await runner.waitForPosition("mirror", await h.store.headPosition(), 30_000);

      const writers = startWriters();
      const reader = startReader();
      const duringRebuild: Array<{ live: number; rebuild: number; progress: RebuildProgress }> = [];
      const result = await runner.rebuild("mirror", {
        batchSize: 20,
        onProgress: async (progress) => {
          if (progress.phase !== "replaying") return;
          const { rows } = await sql<{ live: string; rebuild: string }>`
            select (select count(*) from mirror.applied) as live, (select count(*) from mirror__rebuild.applied) as rebuild`.execute(h.db);
          duringRebuild.push({ live: Number(rows[0]!.live), rebuild: Number(rows[0]!.rebuild), progress });
        },
      });
      const statusAfter = (await runner.status())[0]!;
      const written = await writers.stop();

      expect(written).toBeGreaterThan(0);
      expect(result.swapped).toBe(true);
      expect(result.resumed).toBe(false);
      expect(result.eventsApplied).toBeGreaterThanOrEqual(300);
      expect(result.eventsPerSecond).toBeGreaterThan(0);
      // Both models hashed at the same position inside the swap transaction.
      expect(result.checksums).not.toBeNull();
      expect(result.checksums!.equal).toBe(true);
      expect(result.checksums!.live.digest).toBe(result.checksums!.rebuild.digest);
      expect(result.checksums!.live.tables.find((t) => t.table === "applied")!.rows).toBe(result.eventsApplied);
      expect(result.checksums!.live.schema).toBe("mirror");
      expect(result.checksums!.rebuild.schema).toBe("mirror__rebuild");
      expect(statusAfter.rebuild).toBeNull();

      // Replay started from START, and reads during it were served by the complete old model.
      expect(duringRebuild.length).toBeGreaterThan(3);
      expect(duringRebuild[0]!.progress.eventsApplied).toBe(20);
      expect(duringRebuild.some((d) => d.rebuild < d.live)).toBe(true);
      for (const d of duringRebuild) expect(d.live).toBeGreaterThanOrEqual(300);
      expect(duringRebuild.map((d) => d.progress.eventsApplied)).toEqual(
        [...duringRebuild.map((d) => d.progress.eventsApplied)].sort((a, b) => a - b),
      );

      // The live runner took over from the swapped checkpoint: nothing skipped, nothing twice.
      await allReadable(h);
      await runner.waitForPosition("mirror", await h.store.headPosition(), 30_000);
      const { reads, problems } = await reader.stop();
      expect(problems).toEqual([]);
      expect(reads).toBeGreaterThan(10);
      await expectExactlyOnce("mirror");
      const schemas = await sql<{ nspname: string }>`select nspname from pg_namespace where nspname like 'mirror%' order by 1`.execute(h.db);
      expect(schemas.rows.map((r) => r.nspname)).toEqual(["mirror"]);
      expect(await readRebuild(h.db, "mirror")).toBeUndefined();
    } finally {
      await runner.stop();
    }
  });

  it("a dry run (DR drill) proves the served model equals the log's and leaves it untouched", async () => {
    await allReadable(h);
    const before = await projectionChecksum(h.db, mirror);
    expect(before.position).toBe(formatPosition((await readCheckpoint(h.db, "mirror"))!.position));
    const result = await rebuildProjection({ db: h.db, store: h.store, projection: mirror, swap: false, batchSize: 100 });
    expect(result.swapped).toBe(false);
    expect(result.checksums!.equal).toBe(true);
    expect(result.checksums!.live.digest).toBe(before.digest);
    expect(await projectionChecksum(h.db, mirror)).toEqual(before);
    const schemas = await sql<{ nspname: string }>`select nspname from pg_namespace where nspname like 'mirror%'`.execute(h.db);
    expect(schemas.rows.map((r) => r.nspname)).toEqual(["mirror"]);
  });

  it("after a swap the served tables have identical columns, indexes and rows", async () => {
    await allReadable(h);
    // Bring the live model to the head first, so both sides are at the same position.
    const runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [mirror] });
    await runner.start();
    await runner.waitForPosition("mirror", await h.store.headPosition(), 30_000);
    await runner.stop();
    const before = await snapshot("mirror");
    const result = await rebuildProjection({ db: h.db, store: h.store, projection: mirror, batchSize: 64 });
    expect(result.swapped).toBe(true);
    const after = await snapshot("mirror");
    expect(after.columns.length).toBeGreaterThan(0);
    expect(after.applied.length).toBe(result.eventsApplied);
    expect(after).toEqual(before);
  });

  it("the checksum tells a tampered model apart; requireEqual refuses to swap, a plain rebuild repairs it", async () => {
    await allReadable(h);
    const clean = await projectionChecksum(h.db, mirror);
    await sql`update mirror.streams set events = events + 1 where stream_id = (select min(stream_id) from mirror.streams)`.execute(h.db);
    const tampered = await projectionChecksum(h.db, mirror);
    expect(tampered.digest).not.toBe(clean.digest);
    expect(tampered.tables.find((t) => t.table === "applied")).toEqual(clean.tables.find((t) => t.table === "applied"));

    const refused = await rebuildProjection({ db: h.db, store: h.store, projection: mirror, requireEqual: true }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ChecksumMismatchError);
    expect((await projectionChecksum(h.db, mirror)).digest).toBe(tampered.digest);
    // The refused rebuild is kept for inspection (and resumes next time).
    expect(await readRebuild(h.db, "mirror")).toBeDefined();

    const repaired = await rebuildProjection({ db: h.db, store: h.store, projection: mirror });
    expect(repaired.resumed).toBe(true);
    expect(repaired.checksums!.equal).toBe(false);
    expect(repaired.checksums!.rebuild.digest).toBe(clean.digest);
    expect((await projectionChecksum(h.db, mirror)).digest).toBe(clean.digest);
  });

  it("the checksum does not depend on row order", async () => {
    const probe = probeProjection({ name: "ordering" });
    for (const schema of ["ord_a", "ord_b"]) {
      await h.db.transaction().execute((trx) => createProjectionTables(trx, probe, schema));
    }
    const rows = Array.from({ length: 50 }, (_, i) => ({
      event_id: `00000000-0000-7000-8000-${String(i).padStart(12, "0")}`,
      stream_id: `s-${i % 4}`,
      stream_position: i,
      type: "T",
      occurred_at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
      count: 1,
    }));
    await h.db.withSchema("ord_a").insertInto("applied").values(rows).execute();
    for (const row of [...rows].reverse()) await h.db.withSchema("ord_b").insertInto("applied").values(row).execute();
    const a = await projectionChecksum(h.db, probe, { schema: "ord_a" });
    const b = await projectionChecksum(h.db, probe, { schema: "ord_b" });
    expect(a.digest).toBe(b.digest);
    expect(a.tables).toEqual(b.tables);
    expect(a.position).toBeNull(); // neither the live nor the rebuild schema of "ordering"
    expect(a.tables.find((t) => t.table === "applied")!.rows).toBe(50);
    await sql`update ord_b.applied set count = 2 where stream_position = 7`.execute(h.db);
    expect((await projectionChecksum(h.db, probe, { schema: "ord_b" })).digest).not.toBe(a.digest);
  });

  it("an interrupted rebuild resumes from its own progress without applying anything twice", async () => {
    await allReadable(h);
    const abort = new AbortController();
    let reports = 0;
    const interrupted = await rebuildProjection({
      db: h.db,
      store: h.store,
      projection: mirror,
      batchSize: 30,
      signal: abort.signal,
      onProgress: (progress) => {
        if (progress.phase === "replaying" && ++reports === 3) abort.abort();
      },
    }).catch((e: unknown) => e);
    expect((interrupted as Error).name).toBe("AbortError");
    const stored = await readRebuild(h.db, "mirror");
    expect(Number(stored!.eventsApplied)).toBe(90);
    const partial = await sql<{ n: string }>`select count(*) as n from mirror__rebuild.applied`.execute(h.db);
    expect(partial.rows[0]!.n).toBe("90");

    // Two rebuilds of one projection at once: one runs, the other is refused.
    const outcomes = await Promise.allSettled([
      rebuildProjection({ db: h.db, store: h.store, projection: mirror, batchSize: 30 }),
      rebuildProjection({ db: h.db, store: h.store, projection: mirror, batchSize: 30 }),
    ]);
    const done = outcomes.filter((o) => o.status === "fulfilled");
    const refused = outcomes.filter((o) => o.status === "rejected");
    expect(done).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toBeInstanceOf(RebuildInProgressError);
    const resumed = (done[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof rebuildProjection>>>).value;
    expect(resumed.resumed).toBe(true);
    expect(resumed.checksums!.equal).toBe(true);
    await expectExactlyOnce("mirror");
    expect(Number((await readCheckpoint(h.db, "mirror"))!.eventsApplied)).toBe(resumed.eventsApplied);
  });

  it("keeps replay transactions near maxBatchMs: a slow projection gets smaller batches", async () => {
    await allReadable(h);
    const slow = probeProjection({ name: "slowpoke", delayMs: 2 });
    await ensureProjectionSchemas(h.db, [slow]);
    const sizes: number[] = [];
    let before = 0;
    const result = await rebuildProjection({
      db: h.db,
      store: h.store,
      projection: slow,
      batchSize: 100,
      maxBatchMs: 40,
      swap: false,
      verify: false,
      onProgress: (progress) => {
        if (progress.phase !== "replaying") return;
        sizes.push(progress.eventsApplied - before);
        before = progress.eventsApplied;
      },
    });
    // The first batch (100 events, at least 2 ms each) took far longer than 40 ms; the next ones fit.
    expect(sizes[0]).toBe(100);
    expect(sizes.length).toBeGreaterThan(5);
    expect(Math.max(...sizes.slice(1))).toBeLessThanOrEqual(50);
    expect(result.timings).toMatchObject({ batches: sizes.length, largestBatch: 100 });
    expect(result.timings.applyMs).toBeGreaterThan(0);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(result.eventsApplied);
  });

  it("setup adopts a schema it did not create by rebuilding it", async () => {
    await sql`create schema adopted`.execute(h.db);
    await sql`create table adopted.applied (junk int)`.execute(h.db);
    const probe = probeProjection({ name: "adopted" });
    expect(await ensureProjectionSchemas(h.db, [probe])).toEqual([{ name: "adopted", action: "adopted" }]);
    expect((await readCheckpoint(h.db, "adopted"))!.definitionVersion).toBeNull();
    const runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [probe] });
    await runner.start();
    try {
      await allReadable(h);
      await runner.waitForPosition("adopted", await h.store.headPosition(), 30_000);
      await expectExactlyOnce("adopted");
      expect((await readCheckpoint(h.db, "adopted"))!.definitionVersion).toBe(1);
    } finally {
      await runner.stop();
    }
  });
});
