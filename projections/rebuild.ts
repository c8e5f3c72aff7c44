import { sql, type Kysely, type Transaction } from "kysely";
import type { EventStore, LogPosition } from "../adapters/eventstore/port.ts";
import { START } from "../adapters/eventstore/port.ts";
import { comparePositions, formatPosition } from "../adapters/eventstore/position.ts";
import {
  REBUILD_LOCK_CLASS,
  applyBatch,
  applyBatchIn,
  positionOf,
  readCheckpoint,
  readRebuild,
  schemaExists,
  lockProgress,
} from "./checkpoints.ts";
import { checksumIn, type ProjectionChecksum } from "./checksum.ts";
import { ChecksumMismatchError, ProjectionNotSetUpError, RebuildInProgressError } from "./errors.ts";
import { liveSchema, oldSchema, rebuildSchema, validateProjection, type AnyProjection } from "./projection.ts";
import { createProjectionTables } from "./setup.ts";

/**
 * Rebuild: replay the whole log from START into `<name>__rebuild`, beside the
 * live schema that keeps serving (and keeps being fed by the live runner),
 * then swap in ONE transaction:
 *
 *   lock the live checkpoint row (the live runner's next batch waits on it)
 *   bring the rebuild exactly up to the live checkpoint
 *   [verify] bring the live model up to the rebuild, checksum both: same
 *            position, same snapshot, so they must be equal
 *   rename live -> <name>__old, rebuild -> live
 *   checkpoint := the rebuild's position, definition_version := version
 *   drop <name>__old
 *
 * A reader sees the old model or the new one, never a mix: the renames and the
 * drop commit together, and a query that waits on the dropped tables' lock
 * resolves the name again and lands on the new ones. The checkpoint never
 * moves backwards, so a read that waited for a position stays satisfied.
 *
 * The rebuild's own progress (projections.rebuilds) advances batch by batch
 * exactly like the live checkpoint, so a rebuild that dies resumes where it
 * stopped (unless the definition version changed meanwhile, or `fresh`).
 */

export type RebuildPhase = "starting" | "replaying" | "swapping" | "done" | "failed";

export interface RebuildProgress {
  readonly projection: string;
  readonly phase: RebuildPhase;
  /** Events the rebuild schema has applied, including those of an earlier run it resumed. */
  readonly eventsApplied: number;
  /** Events per second applied by this run. */
  readonly eventsPerSecond: number;
  readonly position: string;
  readonly startedAt: Date;
  readonly resumed: boolean;
}

export interface RebuildOptions {
  readonly db: Kysely<any>;
  readonly store: EventStore;
  readonly projection: AnyProjection;
  readonly batchSize?: number;
  /** Swap the rebuilt model in (default). false: a dry run for a DR drill, rebuild dropped afterwards. */
  readonly swap?: boolean;
  /** Checksum both models at the same position before swapping (default true; skipped when the live model is another version). */
  readonly verify?: boolean;
  /** With verify: refuse to swap when the checksums differ (throws ChecksumMismatchError, keeps the rebuild schema). */
  readonly requireEqual?: boolean;
  /** Start over from START even if a resumable rebuild exists. */
  readonly fresh?: boolean;
  /** Stops between batches; progress is kept for the next run. */
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: RebuildProgress) => void;
  /** lock_timeout inside the swap (a long-running reader of the old tables must not stall the log); retried. */
  readonly swapLockTimeoutMs?: number;
  readonly swapAttempts?: number;
}

export interface RebuildResult {
  readonly projection: string;
  readonly swapped: boolean;
  /** The position both models were at when compared/swapped. */
  readonly position: string;
  readonly eventsApplied: number;
  readonly durationMs: number;
  readonly eventsPerSecond: number;
  readonly resumed: boolean;
  /** Null when not verified (verify false, or the live model was built by another definition version). */
  readonly checksums: { readonly live: ProjectionChecksum; readonly rebuild: ProjectionChecksum; readonly equal: boolean } | null;
}

const LOCK_NOT_AVAILABLE = "55P03";
const DEADLOCK_DETECTED = "40P01";

export async function rebuildProjection(options: RebuildOptions): Promise<RebuildResult> {
  const { db, projection } = options;
  validateProjection(projection);
  return db.connection().execute(async (lockConnection) => {
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_lock(${REBUILD_LOCK_CLASS}, hashtext(${projection.name})) as locked`.execute(lockConnection);
    if (!rows[0]!.locked) throw new RebuildInProgressError(projection.name);
    try {
      return await rebuildLocked(options);
    } finally {
      await sql`select pg_advisory_unlock(${REBUILD_LOCK_CLASS}, hashtext(${projection.name}))`.execute(lockConnection).catch(() => {});
    }
  });
}

async function rebuildLocked(options: RebuildOptions): Promise<RebuildResult> {
  const { db, store, projection, signal } = options;
  const batchSize = options.batchSize ?? 500;
  const swap = options.swap ?? true;
  const target = rebuildSchema(projection);
  const started = Date.now();

  if (!(await readCheckpoint(db, projection.name))) throw new ProjectionNotSetUpError(projection.name);

  const previous = await readRebuild(db, projection.name);
  const resumed =
    !options.fresh && previous !== undefined && previous.definitionVersion === projection.version && (await schemaExists(db, target));
  let position: LogPosition = START;
  let applied = 0;
  let appliedThisRun = 0;
  let startedAt = new Date(started);
  if (resumed) {
    position = previous.position;
    applied = Number(previous.eventsApplied);
    startedAt = previous.startedAt;
  } else {
    startedAt = await db.transaction().execute(async (trx) => {
      await sql`drop schema if exists ${sql.id(target)} cascade`.execute(trx);
      await createProjectionTables(trx, projection, target);
      const { rows } = await sql<{ started_at: Date }>`
        insert into projections.rebuilds (name, definition_version, transaction_id, global_position)
        values (${projection.name}, ${projection.version}, '0'::xid8, 0)
        on conflict (name) do update set definition_version = excluded.definition_version, transaction_id = '0'::xid8,
          global_position = 0, events_applied = 0, started_at = now(), updated_at = now()
        returning started_at`.execute(trx);
      return rows[0]!.started_at;
    });
  }

  const report = (phase: RebuildPhase) =>
    options.onProgress?.({
      projection: projection.name,
      phase,
      eventsApplied: applied,
      eventsPerSecond: rate(appliedThisRun, started),
      position: formatPosition(position),
      startedAt,
      resumed,
    });

  try {
    report("starting");
    // Replay until a read comes back short: the rebuild has reached the head.
    for (;;) {
      signal?.throwIfAborted();
      const events = await store.readAll({ after: position, limit: batchSize });
      if (events.length > 0) {
        position = await applyBatch(db, "rebuilds", projection, target, position, events);
        applied += events.length;
        appliedThisRun += events.length;
        report("replaying");
      }
      if (events.length < batchSize) break;
    }

    const attempts = options.swapAttempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      report("swapping");
      try {
        const outcome = await swapIn(options, position, batchSize, swap);
        applied += outcome.appliedToRebuild;
        appliedThisRun += outcome.appliedToRebuild;
        position = outcome.position;
        report("done");
        const durationMs = Date.now() - started;
        return {
          projection: projection.name,
          swapped: swap,
          position: formatPosition(position),
          eventsApplied: applied,
          durationMs,
          eventsPerSecond: rate(appliedThisRun, started),
          resumed,
          checksums: outcome.checksums,
        };
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (attempt >= attempts || (code !== LOCK_NOT_AVAILABLE && code !== DEADLOCK_DETECTED)) throw error;
        // A reader held the old tables too long: catch up again and retry.
        const fresh = await readRebuild(db, projection.name);
        if (fresh) position = fresh.position;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  } catch (error) {
    report("failed");
    throw error;
  }
}

interface SwapOutcome {
  readonly position: LogPosition;
  readonly appliedToRebuild: number;
  readonly checksums: RebuildResult["checksums"];
}

function swapIn(options: RebuildOptions, rebuildAt: LogPosition, batchSize: number, swap: boolean): Promise<SwapOutcome> {
  const { db, store, projection } = options;
  const live = liveSchema(projection);
  const target = rebuildSchema(projection);
  const old = oldSchema(projection);
  return db.transaction().execute(async (trx) => {
    await sql`select set_config('lock_timeout', ${`${options.swapLockTimeoutMs ?? 10_000}ms`}, true)`.execute(trx);
    // The projection's lock: from here the live runner cannot commit a batch until we are done.
    const liveAt = await lockProgress(trx, "checkpoints", projection.name);
    if (!liveAt) throw new ProjectionNotSetUpError(projection.name);
    const checkpoint = (await readCheckpoint(trx, projection.name))!;
    const liveExists = await schemaExists(trx, live);

    // 1. The rebuild catches up to exactly the live checkpoint (never past it: the live model is compared there).
    let appliedToRebuild = 0;
    rebuildAt = await catchUp(trx, store, projection, "rebuilds", target, rebuildAt, liveAt, batchSize, (n) => (appliedToRebuild += n));

    // 2. Same position on both sides, then compare.
    let checksums: SwapOutcome["checksums"] = null;
    const comparable = liveExists && checkpoint.definitionVersion === projection.version;
    if ((options.verify ?? true) && comparable) {
      // The live runner may lag behind the rebuild: do its next batches here, under the same lock and checks.
      const liveNow = await catchUp(trx, store, projection, "checkpoints", live, liveAt, rebuildAt, batchSize, () => {});
      const liveSum = await checksumIn(trx, projection, live);
      const rebuildSum = await checksumIn(trx, projection, target);
      checksums = { live: liveSum, rebuild: rebuildSum, equal: liveSum.digest === rebuildSum.digest };
      if (!checksums.equal && options.requireEqual) {
        throw new ChecksumMismatchError(projection.name, formatPosition(liveNow), liveSum.digest, rebuildSum.digest);
      }
    }

    if (swap) {
      await sql`drop schema if exists ${sql.id(old)} cascade`.execute(trx);
      if (liveExists) await sql`alter schema ${sql.id(live)} rename to ${sql.id(old)}`.execute(trx);
      await sql`alter schema ${sql.id(target)} rename to ${sql.id(live)}`.execute(trx);
      // Monotonic: the rebuild is at or past the live checkpoint (step 1).
      await sql`
        update projections.checkpoints c
           set transaction_id = r.transaction_id, global_position = r.global_position,
               definition_version = r.definition_version, events_applied = r.events_applied,
               last_error = null, last_error_at = null, updated_at = now()
          from projections.rebuilds r
         where c.name = r.name and c.name = ${projection.name}`.execute(trx);
      await sql`delete from projections.rebuilds where name = ${projection.name}`.execute(trx);
      if (liveExists) await sql`drop schema ${sql.id(old)} cascade`.execute(trx);
    } else {
      await sql`drop schema ${sql.id(target)} cascade`.execute(trx);
      await sql`delete from projections.rebuilds where name = ${projection.name}`.execute(trx);
    }
    return { position: rebuildAt, appliedToRebuild, checksums };
  });
}

/**
 * Inside the swap transaction: applies the log after `from` up to and
 * including `until` to one side (rebuild or live), through the same
 * lock-check-apply-advance path as every other batch.
 */
async function catchUp(
  trx: Transaction<any>,
  store: EventStore,
  projection: AnyProjection,
  which: "checkpoints" | "rebuilds",
  schema: string,
  from: LogPosition,
  until: LogPosition,
  batchSize: number,
  onApplied: (count: number) => void,
): Promise<LogPosition> {
  let at = from;
  while (comparePositions(at, until) < 0) {
    const events = (await store.readAll({ after: at, limit: batchSize })).filter(
      (event) => comparePositions(positionOf(event), until) <= 0,
    );
    if (events.length === 0) {
      throw new Error(`projection ${projection.name}: the log ends before ${formatPosition(until)} (read after ${formatPosition(at)})`);
    }
    at = await applyBatchIn(trx, which, projection, schema, at, events);
    onApplied(events.length);
  }
  return at;
}

function rate(events: number, since: number): number {
  const seconds = (Date.now() - since) / 1000;
  return seconds > 0 ? Math.round((events / seconds) * 10) / 10 : 0;
}
