import { Kysely, PostgresDialect } from "kysely";
import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { createPool } from "../../../adapters/postgres/connection.ts";
import { PostgresEventStore } from "../../../adapters/eventstore/postgres/store.ts";
import type { AppendResult, NewEvent } from "../../../adapters/eventstore/port.ts";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.ts";

export interface ProjectionHarness {
  readonly database: TestDatabase;
  readonly pool: pg.Pool;
  readonly db: Kysely<any>;
  readonly store: PostgresEventStore;
  dispose(): Promise<void>;
}

/** A fresh migrated database, a pool, a kysely over it and the Postgres event store. */
export async function createHarness(): Promise<ProjectionHarness> {
  const database = await createTestDatabase();
  const pool = createPool(database.url, { max: 20 });
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
  const store = new PostgresEventStore({ pool });
  return {
    database,
    pool,
    db,
    store,
    async dispose() {
      await store.close();
      await pool.end();
      await database.drop();
    },
  };
}

export const actor = { kind: "user", id: "tester" } as const;

export function newEvent(type: string, data: unknown = {}, extra: Partial<NewEvent> = {}): NewEvent {
  return { type, data, actor, scope: { tenantId: "t-test" }, occurredAt: new Date("2026-01-01T00:00:00Z"), ...extra };
}

/** Appends `count` events spread round-robin over `streams` streams; returns the last append. */
export async function appendMany(
  store: PostgresEventStore,
  count: number,
  options: { streams?: number; prefix?: string; perAppend?: number } = {},
): Promise<AppendResult> {
  const streams = options.streams ?? 5;
  const prefix = options.prefix ?? `s-${uuidv7().slice(-8)}`;
  const perAppend = options.perAppend ?? 1;
  let last: AppendResult | undefined;
  for (let i = 0; i < count; i += perAppend) {
    const n = Math.min(perAppend, count - i);
    const events = Array.from({ length: n }, (_, k) =>
      newEvent("Ticked", { n: i + k }, { occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i + k)) }),
    );
    last = await store.append(`${prefix}-${i % streams}`, events, { expectedVersion: "any" });
  }
  if (!last) throw new Error("appendMany: count must be positive");
  return last;
}

export async function until(condition: () => Promise<boolean>, timeoutMs = 20_000, stepMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}

/**
 * readAll holds events back while any older transaction on the server is open
 * (other test files share it); waits until every stored event is readable.
 */
export async function allReadable(harness: ProjectionHarness): Promise<void> {
  await until(async () => {
    const { rows } = await harness.pool.query<{ n: string }>("select count(*) as n from eventstore.events");
    const readable = await harness.store.readAll({ limit: 10_000 });
    return readable.length === Number(rows[0]!.n);
  });
}
