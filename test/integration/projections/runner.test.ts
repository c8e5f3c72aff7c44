import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { START } from "../../../adapters/eventstore/port.ts";
import { comparePositions, formatPosition } from "../../../adapters/eventstore/position.ts";
import { applyBatch, readCheckpoint, readRebuild } from "../../../projections/checkpoints.ts";
import { CheckpointMovedError, ProjectionWaitTimeoutError, UnknownProjectionError } from "../../../projections/errors.ts";
import { ProjectionRunner } from "../../../projections/runner.ts";
import { ensureProjectionSchemas } from "../../../projections/setup.ts";
import { probeProjection } from "./fixtures/probe.ts";
import { allReadable, appendMany, createHarness, newEvent, until, type ProjectionHarness } from "./support.ts";

let h: ProjectionHarness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(async () => {
  await h?.dispose();
});

async function totalEvents(): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from eventstore.events`.execute(h.db);
  return Number(rows[0]!.n);
}

/** Every event of the log applied exactly once to probe schema `schema`. */
async function expectExactlyOnce(schema: string, eventTypes?: readonly string[]): Promise<void> {
  const { rows } = await sql<{ missing: string; extra: string; duplicated: string }>`
    select
      (select count(*) from eventstore.events e where ${eventTypes ? sql`e.event_type = any(${[...eventTypes]}::text[]) and` : sql``}
         not exists (select 1 from ${sql.table(`${schema}.applied`)} a where a.event_id = e.event_id)) as missing,
      (select count(*) from ${sql.table(`${schema}.applied`)} a
         where not exists (select 1 from eventstore.events e where e.event_id = a.event_id)) as extra,
      (select count(*) from ${sql.table(`${schema}.applied`)} a where a.count <> 1) as duplicated`.execute(h.db);
  expect(rows[0]).toEqual({ missing: "0", extra: "0", duplicated: "0" });
  const streams = await sql<{ bad: string }>`
    select count(*) as bad from ${sql.table(`${schema}.streams`)} s
     where s.events <> (select count(*) from eventstore.events e where e.stream_id = s.stream_id
                        ${eventTypes ? sql`and e.event_type = any(${[...eventTypes]}::text[])` : sql``})`.execute(h.db);
  expect(streams.rows[0]!.bad).toBe("0");
}

describe("setup", () => {
  it("creates the schema, the tables and a checkpoint at START, and is idempotent", async () => {
    const probe = probeProjection({ name: "setup_probe" });
    expect(await ensureProjectionSchemas(h.db, [probe])).toEqual([{ name: "setup_probe", action: "created" }]);
    expect(await ensureProjectionSchemas(h.db, [probe])).toEqual([{ name: "setup_probe", action: "exists" }]);
    const checkpoint = await readCheckpoint(h.db, "setup_probe");
    expect(checkpoint?.position).toEqual(START);
    expect(checkpoint?.definitionVersion).toBe(1);
    const { rows } = await sql<{ table_name: string }>`select table_name from information_schema.tables
      where table_schema = 'setup_probe' order by table_name`.execute(h.db);
    expect(rows.map((r) => r.table_name)).toEqual(["applied", "streams"]);
  });

  it("recreates tables whose schema vanished and resets the checkpoint", async () => {
    const probe = probeProjection({ name: "setup_gone" });
    await ensureProjectionSchemas(h.db, [probe]);
    await sql`update projections.checkpoints set global_position = 42 where name = 'setup_gone'`.execute(h.db);
    await sql`drop schema setup_gone cascade`.execute(h.db);
    expect(await ensureProjectionSchemas(h.db, [probe])).toEqual([{ name: "setup_gone", action: "recreated" }]);
    expect((await readCheckpoint(h.db, "setup_gone"))?.position).toEqual(START);
  });
});

describe("ProjectionRunner", () => {
  it("applies every event once, advances the checkpoint to the head, and waitForPosition resolves", async () => {
    const probe = probeProjection({ name: "basic" });
    await appendMany(h.store, 120, { streams: 4 });
    const runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [probe], batchSize: 25 });
    await runner.start();
    try {
      const written = await appendMany(h.store, 30, { streams: 3 });
      await runner.waitForPosition("basic", written.position, 20_000);
      // Read-your-writes: the last append is visible once the wait resolves.
      const { rows } = await sql<{ n: string }>`select count(*) as n from basic.applied where event_id = ${written.events[0]!.id}`.execute(h.db);
      expect(rows[0]!.n).toBe("1");

      await allReadable(h);
      const head = await h.store.headPosition();
      await runner.waitForPosition("all", head, 20_000);
      const checkpoint = await readCheckpoint(h.db, "basic");
      expect(comparePositions(checkpoint!.position, head)).toBe(0);
      expect(Number(checkpoint!.eventsApplied)).toBe(await totalEvents());
      await expectExactlyOnce("basic");

      const [status] = await runner.status();
      expect(status).toMatchObject({ name: "basic", position: formatPosition(head), lagEvents: 0, lagMs: 0, lastError: null, driving: true });
      await until(async () => (await runner.status())[0]!.state === "live");
    } finally {
      await runner.stop();
    }
    expect((await runner.status())[0]!.state).toBe("stopped");
  });

  it("reports lag while stopped, and waitForPosition times out with a typed error", async () => {
    const probe = probeProjection({ name: "laggy" });
    const runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [probe] });
    await runner.setup();
    const before = await totalEvents();
    const written = await appendMany(h.store, 7, { streams: 2 });
    await allReadable(h);
    const [status] = await runner.status();
    expect(status!.lagEvents).toBe(before + 7);
    expect(status!.lagEventsExact).toBe(true);
    // occurredAt of the oldest unapplied event lies in the past (2026-01-01 in these fixtures, or earlier runs' appends).
    expect(status!.lagMs).toBeGreaterThan(0);
    expect(status!.state).toBe("stopped");

    const error = await runner.waitForPosition("laggy", written.position, 150).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProjectionWaitTimeoutError);
    expect((error as ProjectionWaitTimeoutError).reached).toEqual({ laggy: formatPosition(START) });
    await expect(runner.waitForPosition("nope", written.position, 10)).rejects.toBeInstanceOf(UnknownProjectionError);

    await runner.start();
    try {
      await runner.waitForPosition("laggy", formatPosition(written.position), 20_000);
      await until(async () => (await runner.status())[0]!.lagEvents === 0);
    } finally {
      await runner.stop();
    }
  });

  it("rolls a failing batch back entirely, reports it, and resumes exactly once when the cause is gone", async () => {
    let poisoned = true;
    // One append is one transaction: its events become readable together, so they land in one batch.
    const written = await appendMany(h.store, 10, { streams: 1, perAppend: 10 });
    const ids = written.events.map((e) => e.id);
    const poisonId = ids.at(-1)!;
    const firstOfBatch = { transactionId: written.position.transactionId, globalPosition: written.events[0]!.globalPosition };
    const probe = probeProjection({
      name: "flaky",
      onApplied: (event) => {
        if (poisoned && event.id === poisonId) throw new Error("handler exploded");
      },
    });
    const errors: string[] = [];
    const runner = new ProjectionRunner({
      pool: h.pool,
      store: h.store,
      projections: [probe],
      batchSize: 1000,
      retry: { initialMs: 50, maxMs: 100 },
      onError: (_name, error) => errors.push((error as Error).message),
    });
    await runner.start();
    try {
      await until(async () => (await runner.status())[0]!.state === "failed");
      const [status] = await runner.status();
      expect(status!.lastError).toBe("handler exploded");
      // The whole batch (the events before the poison one too) was rolled back with the checkpoint.
      expect(comparePositions((await readCheckpoint(h.db, "flaky"))!.position, firstOfBatch)).toBeLessThan(0);
      const { rows } = await sql<{ n: string }>`select count(*) as n from flaky.applied where event_id = any(${ids}::uuid[])`.execute(h.db);
      expect(rows[0]!.n).toBe("0");
      expect((await readCheckpoint(h.db, "flaky"))!.lastError).toBe("handler exploded");

      poisoned = false;
      await allReadable(h);
      await runner.waitForPosition("flaky", await h.store.headPosition(), 20_000);
      await expectExactlyOnce("flaky");
      expect((await runner.status())[0]!.lastError).toBeNull();
      expect((await readCheckpoint(h.db, "flaky"))!.lastError).toBeNull();
      expect(errors.length).toBeGreaterThan(0);
    } finally {
      await runner.stop();
    }
  });

  it("refuses a batch whose expected checkpoint is stale (compare-and-set) and writes nothing", async () => {
    const probe = probeProjection({ name: "cas" });
    await allReadable(h);
    await ensureProjectionSchemas(h.db, [probe]);
    const events = await h.store.readAll({ limit: 5 });
    const first = await applyBatch(h.db, "checkpoints", probe, "cas", START, events.slice(0, 2));
    // A second writer that read the checkpoint before the first one committed:
    await expect(applyBatch(h.db, "checkpoints", probe, "cas", START, events.slice(0, 2))).rejects.toBeInstanceOf(CheckpointMovedError);
    const { rows } = await sql<{ n: string; max: number }>`select count(*) as n, max(count) as max from cas.applied`.execute(h.db);
    expect(rows[0]).toEqual({ n: "2", max: 1 });
    expect((await readCheckpoint(h.db, "cas"))!.position).toEqual(first);
  });

  it("lets one of two runner instances drive a projection; the other takes over when it stops", async () => {
    const probe = probeProjection({ name: "shared" });
    const options = { pool: h.pool, store: h.store, projections: [probe], batchSize: 10, standbyRetryMs: 50 };
    const a = new ProjectionRunner(options);
    const b = new ProjectionRunner(options);
    await Promise.all([a.start(), b.start()]);
    try {
      await appendMany(h.store, 60, { streams: 3 });
      await b.waitForPosition("shared", await h.store.headPosition(), 20_000);
      const drivers = [(await a.status())[0]!.driving, (await b.status())[0]!.driving];
      expect(drivers.filter(Boolean)).toHaveLength(1);
      const [leader, follower] = drivers[0] ? [a, b] : [b, a];
      expect((await follower.status())[0]!.state).toBe("standby");

      await leader.stop();
      const written = await appendMany(h.store, 25, { streams: 2 });
      await follower.waitForPosition("shared", written.position, 20_000);
      await allReadable(h);
      await follower.waitForPosition("shared", await h.store.headPosition(), 20_000);
      expect((await follower.status())[0]!.driving).toBe(true);
      await expectExactlyOnce("shared");
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it("passes events a projection does not subscribe to, without handing them to it", async () => {
    const probe = probeProjection({ name: "picky", eventTypes: ["Picked"] });
    await h.store.append("picky-1", [newEvent("Picked"), newEvent("Ignored"), newEvent("Picked")], { expectedVersion: "any" });
    const runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [probe] });
    await runner.start();
    try {
      await allReadable(h);
      const head = await h.store.headPosition();
      await runner.waitForPosition("picky", head, 20_000);
      expect((await readCheckpoint(h.db, "picky"))!.position).toEqual(head);
      await expectExactlyOnce("picky", ["Picked"]);
      const { rows } = await sql<{ n: string }>`select count(*) as n from picky.applied where type <> 'Picked'`.execute(h.db);
      expect(rows[0]!.n).toBe("0");
    } finally {
      await runner.stop();
    }
  });

  it("rebuilds a projection whose definition version changed, serving the old tables until the swap", async () => {
    const v1 = probeProjection({ name: "versioned", version: 1 });
    const first = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [v1] });
    await first.start();
    await first.waitForPosition("versioned", await h.store.headPosition(), 20_000);
    await first.stop();
    await appendMany(h.store, 40, { streams: 2 });

    let servedDuringRebuild: number | undefined;
    const v2 = probeProjection({
      name: "versioned",
      version: 2,
      delayMs: 1,
      onApplied: async () => {
        if (servedDuringRebuild === undefined) {
          const { rows } = await sql<{ n: string }>`select count(*) as n from versioned.applied`.execute(h.db);
          servedDuringRebuild = Number(rows[0]!.n);
        }
      },
    });
    const servedBefore = Number((await sql<{ n: string }>`select count(*) as n from versioned.applied`.execute(h.db)).rows[0]!.n);
    const second = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [v2] });
    await second.start();
    try {
      await allReadable(h);
      await second.waitForPosition("versioned", await h.store.headPosition(), 30_000);
      // While the rebuild replayed, the v1 tables were served whole (not emptied, not fed by the v2 handler).
      expect(servedDuringRebuild).toBe(servedBefore);
      const checkpoint = await readCheckpoint(h.db, "versioned");
      expect(checkpoint!.definitionVersion).toBe(2);
      await expectExactlyOnce("versioned");
      const schemas = await sql<{ nspname: string }>`select nspname from pg_namespace where nspname like 'versioned%'`.execute(h.db);
      expect(schemas.rows.map((r) => r.nspname)).toEqual(["versioned"]);
    } finally {
      await second.stop();
    }
  });

  it("never rebuilds backwards: an outdated instance leaves a newer definition's tables alone", async () => {
    // "versioned" was rebuilt to version 2 by the test above.
    const outdated = new ProjectionRunner({
      pool: h.pool,
      store: h.store,
      projections: [probeProjection({ name: "versioned", version: 1 })],
      retry: { initialMs: 50, maxMs: 100 },
    });
    await outdated.start();
    try {
      await until(async () => (await outdated.status())[0]!.state === "failed");
      expect((await outdated.status())[0]!.lastError).toMatch(/definition version 2, newer than this code's 1/);
      expect((await readCheckpoint(h.db, "versioned"))!.definitionVersion).toBe(2);
      expect(await readRebuild(h.db, "versioned")).toBeUndefined();
    } finally {
      await outdated.stop();
    }
  });
});
