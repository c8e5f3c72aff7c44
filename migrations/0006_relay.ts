import { sql, type Kysely } from "kysely";

/**
 * Schema `relay` (issue 4): bookkeeping of the relay that copies the event log
 * to NATS JetStream (adapters/nats/relay.ts).
 *
 * - checkpoints: per relay name, the log position (see
 *   adapters/eventstore/port.ts LogPosition) up to which every event has been
 *   acknowledged by JetStream. Written after a batch's acks, so a crash in
 *   between republishes the batch, which JetStream drops by Nats-Msg-Id.
 *   Only ever moved forward by the relay (an operator may move it back to
 *   republish).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists relay`.execute(db);
  await sql`
    create table relay.checkpoints (
      name text primary key,
      transaction_id xid8 not null,
      global_position bigint not null,
      events_published bigint not null default 0,
      updated_at timestamptz not null default now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema if exists relay cascade`.execute(db);
}
