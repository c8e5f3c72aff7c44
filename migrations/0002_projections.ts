import { sql, type Kysely } from "kysely";

/**
 * Bookkeeping for read projections (projections/). Each projection's own
 * tables live in a schema named after it and are created by the projection
 * itself (projections/setup.ts), not here: their shape belongs to the
 * projection's definition version, and a new version is rebuilt beside the
 * old one rather than migrated in place.
 *
 * - checkpoints: how far each live projection has applied the log, as a
 *   (transaction_id, global_position) pair (see adapters/eventstore/port.ts
 *   LogPosition). Advanced in the same transaction as the handler's writes,
 *   with a compare-and-set on the previous value.
 * - rebuilds: the progress of a rebuild into `<schema>__rebuild`, advanced the
 *   same way, so a rebuild that dies resumes instead of starting over.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists projections`.execute(db);

  await sql`
    create table projections.checkpoints (
      name text primary key,
      transaction_id xid8 not null,
      global_position bigint not null,
      -- The projection version whose handler built the live tables; null = unknown (forces a rebuild).
      definition_version integer,
      events_applied bigint not null default 0,
      last_error text,
      last_error_at timestamptz,
      updated_at timestamptz not null default now()
    )`.execute(db);

  await sql`
    create table projections.rebuilds (
      name text primary key references projections.checkpoints (name) on delete cascade,
      definition_version integer not null,
      transaction_id xid8 not null,
      global_position bigint not null,
      events_applied bigint not null default 0,
      started_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema projections cascade`.execute(db);
}
