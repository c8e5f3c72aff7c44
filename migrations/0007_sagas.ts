import { sql, type Kysely } from "kysely";

/**
 * Schema `sagas` (issue 4): the saga runtime's own durable state (sagas/README.md).
 *
 * - timers: one row per pending timer of a task (its deadline, the retry of a
 *   step). Derived from task events, so replaying the events makes them again;
 *   unique per (task_id, kind, key), so deriving one twice keeps one row. The
 *   timer loop claims due rows with `for update skip locked`, sends the
 *   command and deletes the row in the same transaction only after the
 *   command was stored; a failed command pushes due_at back (attempts counts).
 * - outstanding_work: work requests published and not answered yet, with the
 *   worker (service, datacenter) that must answer. The health check blocks
 *   these tasks when that worker sends no heartbeats (blocked = we did), and
 *   unblocks them when it comes back.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists sagas`.execute(db);
  await sql`
    create table sagas.timers (
      task_id text not null,
      kind text not null,
      key text not null default '',
      due_at timestamptz not null,
      payload jsonb not null default '{}'::jsonb,
      attempts integer not null default 0,
      last_error text,
      created_at timestamptz not null default now(),
      primary key (task_id, kind, key)
    )`.execute(db);
  await sql`create index timers_due on sagas.timers (due_at)`.execute(db);
  await sql`
    create table sagas.outstanding_work (
      request_id text primary key,
      task_id text not null,
      step text not null,
      service text not null,
      action text not null,
      datacenter text not null,
      requested_at timestamptz not null,
      blocked boolean not null default false
    )`.execute(db);
  await sql`create index outstanding_work_worker on sagas.outstanding_work (service, datacenter)`.execute(db);
  await sql`create index outstanding_work_task on sagas.outstanding_work (task_id)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema if exists sagas cascade`.execute(db);
}
