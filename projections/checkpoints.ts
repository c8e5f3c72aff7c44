import { sql, type Kysely, type Transaction } from "kysely";
import type { LogPosition, RecordedEvent } from "../adapters/eventstore/port.ts";
import { comparePositions, formatPosition } from "../adapters/eventstore/position.ts";
import { CheckpointMovedError } from "./errors.ts";
import { acceptsEvent, type AnyProjection } from "./projection.ts";

/**
 * Checkpoint bookkeeping shared by the live runner and rebuilds. Both write a
 * batch the same way: one transaction that
 *   1. locks the progress row (FOR UPDATE) and checks it still holds the
 *      position this writer read,
 *   2. applies the handler to every event of the batch,
 *   3. compare-and-sets the row to the batch's last position.
 * A crash anywhere rolls all of it back; a concurrent writer finds the row
 * moved and rolls back too. Locking the row *before* touching any projection
 * table also orders every batch against a rebuild's swap (which locks the
 * same row first), so the two never deadlock.
 */

/** live: projections.checkpoints; rebuild: projections.rebuilds. */
export type ProgressTable = "checkpoints" | "rebuilds";

/** Advisory lock classes (first int of the two-int form); the second int is hashtext(name). */
export const DRIVER_LOCK_CLASS = 0x44565001; // one runner instance drives a projection
export const REBUILD_LOCK_CLASS = 0x44565002; // one rebuild per projection at a time
export const SETUP_LOCK_CLASS = 0x44565003; // concurrent setups of one projection queue

export interface CheckpointRow {
  readonly name: string;
  readonly position: LogPosition;
  readonly definitionVersion: number | null;
  readonly eventsApplied: bigint;
  readonly lastError: string | null;
  readonly lastErrorAt: Date | null;
  readonly updatedAt: Date;
}

export interface RebuildRow {
  readonly name: string;
  readonly position: LogPosition;
  readonly definitionVersion: number;
  readonly eventsApplied: bigint;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

interface RawCheckpoint {
  name: string;
  transaction_id: string;
  global_position: string;
  definition_version: number | null;
  events_applied: string;
  last_error: string | null;
  last_error_at: Date | null;
  updated_at: Date;
}

interface RawRebuild {
  name: string;
  transaction_id: string;
  global_position: string;
  definition_version: number;
  events_applied: string;
  started_at: Date;
  updated_at: Date;
}

const table = (which: ProgressTable) => sql.table(`projections.${which}`);

function toPosition(row: { transaction_id: string; global_position: string }): LogPosition {
  return { transactionId: BigInt(row.transaction_id), globalPosition: BigInt(row.global_position) };
}

function toCheckpoint(row: RawCheckpoint): CheckpointRow {
  return {
    name: row.name,
    position: toPosition(row),
    definitionVersion: row.definition_version,
    eventsApplied: BigInt(row.events_applied),
    lastError: row.last_error,
    lastErrorAt: row.last_error_at,
    updatedAt: row.updated_at,
  };
}

export function positionOf(event: Pick<RecordedEvent, "transactionId" | "globalPosition">): LogPosition {
  return { transactionId: event.transactionId, globalPosition: event.globalPosition };
}

export function maxPosition(a: LogPosition, b: LogPosition): LogPosition {
  return comparePositions(a, b) >= 0 ? a : b;
}

const CHECKPOINT_COLUMNS = sql`name, transaction_id::text as transaction_id, global_position::text as global_position,
  definition_version, events_applied::text as events_applied, last_error, last_error_at, updated_at`;

export async function readCheckpoints(db: Kysely<any>, names?: readonly string[]): Promise<Map<string, CheckpointRow>> {
  const { rows } = await sql<RawCheckpoint>`select ${CHECKPOINT_COLUMNS} from projections.checkpoints
    ${names ? sql`where name = any(${[...names]}::text[])` : sql``}`.execute(db);
  return new Map(rows.map((row) => [row.name, toCheckpoint(row)]));
}

export async function readCheckpoint(db: Kysely<any>, name: string): Promise<CheckpointRow | undefined> {
  return (await readCheckpoints(db, [name])).get(name);
}

export async function readRebuild(db: Kysely<any>, name: string): Promise<RebuildRow | undefined> {
  const { rows } = await sql<RawRebuild>`select name, transaction_id::text as transaction_id,
      global_position::text as global_position, definition_version, events_applied::text as events_applied,
      started_at, updated_at
    from projections.rebuilds where name = ${name}`.execute(db);
  const row = rows[0];
  return row && {
    name: row.name,
    position: toPosition(row),
    definitionVersion: row.definition_version,
    eventsApplied: BigInt(row.events_applied),
    startedAt: row.started_at,
    updatedAt: row.updated_at,
  };
}

/** Locks the progress row for the rest of the transaction and returns its position. */
export async function lockProgress(trx: Transaction<any>, which: ProgressTable, name: string): Promise<LogPosition | undefined> {
  const { rows } = await sql<{ transaction_id: string; global_position: string }>`
    select transaction_id::text as transaction_id, global_position::text as global_position
      from ${table(which)} where name = ${name} for update`.execute(trx);
  return rows[0] && toPosition(rows[0]);
}

/** Compare-and-set: moves the row from `from` to `to`; false when it did not hold `from`. */
export async function advanceProgress(
  trx: Transaction<any>,
  which: ProgressTable,
  name: string,
  from: LogPosition,
  to: LogPosition,
  eventsApplied: number,
): Promise<boolean> {
  const result = await sql`
    update ${table(which)}
       set transaction_id = ${to.transactionId.toString()}::xid8,
           global_position = ${to.globalPosition.toString()}::bigint,
           events_applied = events_applied + ${eventsApplied},
           ${which === "checkpoints" ? sql`last_error = null, last_error_at = null,` : sql``}
           updated_at = now()
     where name = ${name}
       and transaction_id = ${from.transactionId.toString()}::xid8
       and global_position = ${from.globalPosition.toString()}::bigint`.execute(trx);
  return result.numAffectedRows === 1n;
}

/** Outside any batch: remembers why the projection is stuck, for status() in every process. */
export async function recordFailure(db: Kysely<any>, name: string, message: string): Promise<void> {
  await sql`update projections.checkpoints set last_error = ${message.slice(0, 4000)}, last_error_at = now()
    where name = ${name}`.execute(db);
}

/**
 * Runs the projection over events, in order, on a transaction bound to
 * `schema`: the accepted events go to `handleBatch` in one call when the
 * projection has one, otherwise to `handle` one by one.
 */
export async function applyEvents(
  trx: Transaction<any>,
  projection: AnyProjection,
  schema: string,
  events: readonly RecordedEvent[],
): Promise<void> {
  const bound = trx.withSchema(schema);
  const context = { schema };
  const accepted = projection.eventTypes === undefined ? events : events.filter((event) => acceptsEvent(projection, event));
  if (accepted.length === 0) return;
  if (projection.handleBatch) {
    await projection.handleBatch(bound, accepted, context);
    return;
  }
  for (const event of accepted) await projection.handle(bound, event, context);
}

/** The store promised log order without gaps; a batch that breaks it must not be applied. */
export function assertBatchOrder(name: string, after: LogPosition, events: readonly RecordedEvent[]): void {
  let previous = after;
  for (const event of events) {
    const position = positionOf(event);
    if (comparePositions(position, previous) <= 0) {
      throw new Error(
        `projection ${name}: event ${event.id} at ${formatPosition(position)} is not after ${formatPosition(previous)}; refusing the batch`,
      );
    }
    previous = position;
  }
}

/** Applies `events` inside `trx` against progress row `which`/`name`, which must hold `expected`. */
export async function applyBatchIn(
  trx: Transaction<any>,
  which: ProgressTable,
  projection: AnyProjection,
  schema: string,
  expected: LogPosition,
  events: readonly RecordedEvent[],
): Promise<LogPosition> {
  const last = events.at(-1);
  if (!last) return expected;
  assertBatchOrder(projection.name, expected, events);
  const current = await lockProgress(trx, which, projection.name);
  if (!current || comparePositions(current, expected) !== 0) throw new CheckpointMovedError(projection.name, expected, current);
  await applyEvents(trx, projection, schema, events);
  const to = positionOf(last);
  if (!(await advanceProgress(trx, which, projection.name, expected, to, events.length))) {
    throw new CheckpointMovedError(projection.name, expected, undefined);
  }
  return to;
}

/** One batch, one transaction: the handler's writes and the new checkpoint commit together or not at all. */
export function applyBatch(
  db: Kysely<any>,
  which: ProgressTable,
  projection: AnyProjection,
  schema: string,
  expected: LogPosition,
  events: readonly RecordedEvent[],
): Promise<LogPosition> {
  if (events.length === 0) return Promise.resolve(expected);
  return db.transaction().execute((trx) => applyBatchIn(trx, which, projection, schema, expected, events));
}

export async function schemaExists(db: Kysely<any>, schema: string): Promise<boolean> {
  const { rows } = await sql<{ found: boolean }>`select exists (select 1 from pg_namespace where nspname = ${schema}) as found`.execute(db);
  return rows[0]!.found;
}
