import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../../adapters/postgres/connection.ts";
import { PostgresEventStore } from "../../../adapters/eventstore/postgres/store.ts";
import { ConcurrencyError } from "../../../adapters/eventstore/errors.ts";
import type { AppendResult } from "../../../adapters/eventstore/port.ts";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.ts";
import { describeEventStoreContract, event } from "./contract.ts";

describeEventStoreContract("postgres", async () => {
  const database = await createTestDatabase();
  const pools: pg.Pool[] = [];
  return {
    async createStore(options) {
      const pool = createPool(database.url);
      pools.push(pool);
      return new PostgresEventStore({ pool, upcasters: options?.upcasters });
    },
    async dispose() {
      for (const pool of pools) await pool.end();
      await database.drop();
    },
  };
});

describe("postgres event store: tamper evidence and group commit", () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  let store: PostgresEventStore;

  beforeAll(async () => {
    database = await createTestDatabase();
    pool = createPool(database.url);
    store = new PostgresEventStore({ pool });
  });
  afterAll(async () => {
    await store.close();
    await pool.end();
    await database.drop();
  });

  /** What an attacker with superuser rights does: switch off the guard, then edit. */
  async function tamper(sql: string, params: unknown[]): Promise<void> {
    const client = await pool.connect();
    try {
      await client.query("begin");
      await client.query("alter table eventstore.events disable trigger events_append_only");
      await client.query(sql, params);
      await client.query("alter table eventstore.events enable trigger events_append_only");
      await client.query("commit");
    } finally {
      client.release();
    }
  }

  it("refuses to update or delete stored events", async () => {
    await store.append("guarded-1", [event("A")], { expectedVersion: "no_stream" });
    await expect(pool.query("update eventstore.events set data = '{}' where stream_id = 'guarded-1'")).rejects.toThrow(/append-only/);
    await expect(pool.query("delete from eventstore.events where stream_id = 'guarded-1'")).rejects.toThrow(/append-only/);
  });

  it("detects a row whose data was edited with SQL", async () => {
    await store.append("ledger-1", [event("Credited", { amount: 10 }), event("Credited", { amount: 20 })], { expectedVersion: "no_stream" });
    expect((await store.verifyStream("ledger-1")).ok).toBe(true);
    await tamper(`update eventstore.events set data = '{"amount": 1000}' where stream_id = 'ledger-1' and stream_position = 0`, []);
    const report = await store.verifyStream("ledger-1");
    expect(report.ok).toBe(false);
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: "content_mismatch", streamPosition: 0 }));
    const all = await store.verifyAll();
    expect(all.problems.map((p) => p.streamId)).toContain("ledger-1");
  });

  it("detects a row whose data and digest were both rewritten (the chain breaks)", async () => {
    await store.append("ledger-2", [event("Credited", { amount: 10 }), event("Credited", { amount: 20 })], { expectedVersion: "no_stream" });
    await tamper(`update eventstore.events set content_digest = sha256('forged') where stream_id = 'ledger-2' and stream_position = 0`, []);
    const report = await store.verifyStream("ledger-2");
    expect(report.problems.map((p) => p.kind)).toContain("chain_broken");
  });

  it("detects a deleted row", async () => {
    await store.append("ledger-3", [event("A"), event("B"), event("C")], { expectedVersion: "no_stream" });
    await tamper(`delete from eventstore.events where stream_id = 'ledger-3' and stream_position = 1`, []);
    const kinds = (await store.verifyStream("ledger-3")).problems.map((p) => p.kind);
    expect(kinds).toContain("position_gap");
    expect(kinds).toContain("chain_broken");
  });

  it("detects a whole stream deleted together with its head once the log is sealed", async () => {
    const written = await store.append("ledger-4", [event("A"), event("B")], { expectedVersion: "no_stream" });
    await store.waitUntilReadable(written.position);
    const seal = await store.seal();
    expect(seal?.eventCount).toBeGreaterThan(0n);
    const clean = await store.verifyAll();
    expect(clean.problems.filter((p) => p.kind === "seal_mismatch")).toEqual([]);
    await tamper(`delete from eventstore.events where stream_id = 'ledger-4'`, []);
    await pool.query(`delete from eventstore.streams where stream_id = 'ledger-4'`);
    const report = await store.verifyAll();
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: "seal_mismatch" }));
  });

  it("commits concurrent appends together while each keeps its own version check", async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.append(`batch-${i}`, [event("A")], { expectedVersion: "no_stream" })));
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => store.append(`batch-${i}`, [event("B")], { expectedVersion: i === 7 ? 5 : 0 })),
    );
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(19);
    expect((outcomes[7] as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError);
    expect((await store.readStream("batch-7")).map((e) => e.type)).toEqual(["A"]);
    expect((await store.readStream("batch-8")).map((e) => e.type)).toEqual(["A", "B"]);
  });

  it("does not let readAll pass an open transaction's events", async () => {
    const head = await store.headPosition();
    const writer = await pool.connect();
    let written: AppendResult | undefined;
    try {
      await writer.query("begin");
      await writer.query("select pg_current_xact_id()"); // take an xid now: older than the append below
      written = await store.append("late-1", [event("Second")], { expectedVersion: "no_stream" });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await store.readAll({ after: head })).filter((e) => e.streamId === "late-1")).toEqual([]);
      expect(await store.hasEventsBehindOpenTransaction()).toBe(true);
    } finally {
      await writer.query("commit");
      writer.release();
    }
    // Other test files' open transactions (xids are server-wide) may still hold it back a moment.
    await store.waitUntilReadable(written!.position);
    expect((await store.readAll({ after: head })).map((e) => e.streamId)).toContain("late-1");
  });
});

describe("postgres event store: log order is numeric in the transaction id", () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  let store: PostgresEventStore;

  beforeAll(async () => {
    database = await createTestDatabase();
    pool = createPool(database.url);
    store = new PostgresEventStore({ pool });
  });
  afterAll(async () => {
    await store.close();
    await pool.end();
    await database.drop();
  });

  it("orders transaction 9 before transaction 10 (as text, '10' sorts first)", async () => {
    // Rows as two old transactions would have left them: xid 10 written first (lower global position), xid 9 after.
    for (const [stream, xid] of [["xid-ten", "10"], ["xid-nine", "9"]] as const) {
      await pool.query(
        `insert into eventstore.events (transaction_id, event_id, stream_id, stream_position, event_type, schema_version,
           data, metadata, tenant_id, occurred_at, content_digest, hash)
         values ($1::xid8, gen_random_uuid(), $2, 0, 'Old', 1, '{}', $3, 't', now(), '\\x00', '\\x00')`,
        [xid, stream, JSON.stringify({ correlationId: "c", causationId: null, actor: { kind: "system", id: "s" }, scope: { tenantId: "t" }, datacenter: null })],
      );
    }
    const first = await store.readAll({ limit: 2 });
    expect(first.map((e) => [e.streamId, e.transactionId])).toEqual([["xid-nine", 9n], ["xid-ten", 10n]]);
    const next = await store.readAll({ after: first[0]!, limit: 1 });
    expect(next.map((e) => e.streamId)).toEqual(["xid-ten"]);
    expect((await store.headPosition()).transactionId).toBe(10n);
  });
});
