import { sql, type Kysely } from "kysely";

/**
 * State of the HTTP API itself (schema `api`), not a read model.
 *
 * idempotency_keys: one row per (actor, Idempotency-Key) on POST. The first
 * request reserves the key ('pending') with the hash of what it asked for
 * and, for creates without a client id, the id the server generated; when it
 * is answered, the response (status, headers, body) is stored ('completed').
 * A repeat with the same key and hash replays that response; another hash is
 * refused until the key expires (24 h after its first use). A request that
 * failed with a 5xx leaves the key 'retryable': the same request may run
 * again, with the same generated id, so a retry cannot create twice.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists api`.execute(db);
  await sql`
    create table api.idempotency_keys (
      actor_kind text not null,
      actor_id text not null,
      key text not null,
      method text not null,
      route text not null,
      request_hash text not null,
      state text not null check (state in ('pending', 'completed', 'retryable')),
      generated_id text not null,
      response_status integer,
      response_headers jsonb,
      response_body text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      expires_at timestamptz not null,
      primary key (actor_kind, actor_id, key),
      check ((state = 'completed') = (response_status is not null))
    )`.execute(db);
  await sql`create index idempotency_keys_expires_at on api.idempotency_keys (expires_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema api cascade`.execute(db);
}
