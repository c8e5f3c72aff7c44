import { sql, type Kysely } from "kysely";

/**
 * readAll must walk the log-order index from the cursor and stop after `limit`
 * rows. When the planner's statistics say fewer rows follow the cursor than the
 * limit (always true of a log that grew since its last ANALYZE), it prefers a
 * bitmap scan of everything after the cursor plus a sort: a catch-up reader
 * would then read the whole rest of the log on every call. Inside this
 * function the planner is told not to.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function eventstore.read_all(after_transaction_id xid8, after_global_position bigint, max_rows integer)
    returns setof eventstore.events
    language sql stable
    set enable_sort = off
    set enable_bitmapscan = off
    set enable_seqscan = off
    as $$
      select * from eventstore.events
       where (transaction_id, global_position) > (after_transaction_id, after_global_position)
         and transaction_id < pg_snapshot_xmin(pg_current_snapshot())
       order by transaction_id, global_position
       limit max_rows
    $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function eventstore.read_all(xid8, bigint, integer)`.execute(db);
}
