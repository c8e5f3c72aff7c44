import { sql, type Kysely, type Transaction } from "kysely";
import type { EventStore, LogPosition, RecordedEvent } from "../adapters/eventstore/port.ts";
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
 *
 * Replay batches are bigger than the live runner's (up to `batchSize`, 5,000
 * by default) but bounded in time: every open write transaction holds back
 * every log reader on the server (the store reads only below the oldest open
 * transaction), so a batch transaction that takes longer than `maxBatchMs`
 * makes the next ones smaller; batches start at 500 events and grow while they
 * stay well under the bound. The next batch is read from the log while a
 * batch is applied, in reads of 1,000 events (see REBUILD_READ_SIZE).
 */

/** Events per replay transaction at most (the live runner's batches are smaller: latency, not throughput). */
export const DEFAULT_REBUILD_BATCH_SIZE = 5_000;
/** Replay batches start this big and double while fast (and never exceed batchSize). */
export const INITIAL_REBUILD_BATCH_SIZE = 500;
/** Aim for replay transactions shorter than this: while one is open, log readers server-wide wait. */
export const DEFAULT_MAX_BATCH_MS = 500;
/** Bounds what a rebuild keeps in memory (a batch, and the next one read ahead). */
export const MAX_REBUILD_BATCH_SIZE = 20_000;

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
  /** Most events per replay transaction (default 5,000, at most 20,000). */
  readonly batchSize?: number;
  /**
   * Target duration of one replay transaction (default 500 ms): a slower one
   * shrinks the next batches to fit, fast ones let them grow back to batchSize.
   */
  readonly maxBatchMs?: number;
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
  /** Where this run's time went (ms). */
  readonly timings: RebuildTimings;
}

export interface RebuildTimings {
  /** Waiting for the log: reads that did not overlap a batch being applied. */
  readonly readWaitMs: number;
  /** Inside replay batch transactions (lock, handler, checkpoint, commit). */
  readonly applyMs: number;
  /** The swap transaction (catch-up to the live checkpoint, checksums with verify, renames). */
  readonly swapMs: number;
  /** Replay transactions and the largest batch applied in one. */
  readonly batches: number;
  readonly largestBatch: number;
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
  const batchSize = options.batchSize ?? DEFAULT_REBUILD_BATCH_SIZE;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > MAX_REBUILD_BATCH_SIZE) {
    throw new RangeError(`batchSize must be an integer from 1 to ${MAX_REBUILD_BATCH_SIZE}, got ${batchSize}`);
  }
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

  const timings = { readWaitMs: 0, applyMs: 0, swapMs: 0, batches: 0, largestBatch: 0 };
  const log = new LogReader(store, position, Math.min(batchSize, REBUILD_READ_SIZE));
  try {
    report("starting");
    // Replay until a read comes back short with no batch of ours open: the rebuild has reached the head.
    const sizer = new BatchSizer(batchSize, options.maxBatchMs ?? DEFAULT_MAX_BATCH_MS);
    for (;;) {
      signal?.throwIfAborted();
      const waited = performance.now();
      const events = await log.take(sizer.limit);
      timings.readWaitMs += performance.now() - waited;
      if (events.length === 0) break;
      log.prefetch(sizer.limit); // read the next batch while this one is applied
      const batchStarted = performance.now();
      position = await applyBatch(db, "rebuilds", projection, target, position, events);
      const took = performance.now() - batchStarted;
      sizer.record(events.length, took);
      timings.applyMs += took;
      timings.batches += 1;
      timings.largestBatch = Math.max(timings.largestBatch, events.length);
      applied += events.length;
      appliedThisRun += events.length;
      report("replaying");
    }
    await log.close();

    const attempts = options.swapAttempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      report("swapping");
      try {
        const swapStarted = performance.now();
        const outcome = await swapIn(options, position, batchSize, swap).finally(() => {
          timings.swapMs += performance.now() - swapStarted;
        });
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
          timings: {
            readWaitMs: Math.round(timings.readWaitMs),
            applyMs: Math.round(timings.applyMs),
            swapMs: Math.round(timings.swapMs),
            batches: timings.batches,
            largestBatch: timings.largestBatch,
          },
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
  } finally {
    await log.close();
  }
}

/**
 * Sizes replay batches so that one transaction takes about `maxMs` at most:
 * starts at INITIAL_REBUILD_BATCH_SIZE (or `max` if smaller), doubles after a
 * full batch that took under half the bound, and after a slower one shrinks
 * to the number of events that would have fit.
 */
export class BatchSizer {
  limit: number;

  constructor(
    private readonly max: number,
    private readonly maxMs: number,
  ) {
    this.limit = Math.min(max, INITIAL_REBUILD_BATCH_SIZE);
  }

  record(events: number, ms: number): void {
    if (ms > this.maxMs) {
      this.limit = Math.max(1, Math.min(this.limit, Math.floor((events * this.maxMs) / ms)));
    } else if (ms < this.maxMs / 2 && events >= this.limit) {
      this.limit = Math.min(this.max, this.limit * 2);
    }
  }
}

/**
 * Reads of the log are this big, however big the batches: several make a
 * batch. Postgres plans `readAll` with an index scan only while the limit is
 * small next to the events it estimates remain; a bigger limit flips it to
 * scanning and sorting everything after the position (measured: 1.6 ms for
 * 2,000 events, 107 ms for 5,000 on a 40,000-event log), which makes a replay
 * quadratic. Small reads keep that to the last few thousand events.
 */
export const REBUILD_READ_SIZE = 1_000;

/**
 * The log after a position, read ahead in reads of `readSize` into a buffer
 * that batches are taken from: while a batch is applied, the reads for the
 * next one run, and a batch can be bigger or smaller than a read.
 *
 * A read that overlaps one of our own batch transactions may come back short
 * without being at the head: the store returns only events of transactions
 * older than every open one, ours included. Such a read is still a correct
 * prefix of the log, but only a short read made while no batch of ours is
 * open ("clean") means the head; after a short overlapping read, reading
 * goes on with clean reads.
 */
export class LogReader {
  private buffer: RecordedEvent[] = [];
  private tail: LogPosition;
  private pump: Promise<void> | null = null;
  private failure: { readonly error: unknown } | null = null;
  private atHead = false;
  private needClean = false;

  constructor(
    private readonly store: EventStore,
    after: LogPosition,
    private readonly readSize: number,
  ) {
    this.tail = after;
  }

  /** The next events, at most `limit`; fewer only at the head, none when nothing is left. Call with no batch transaction open. */
  async take(limit: number): Promise<RecordedEvent[]> {
    for (;;) {
      if (this.pump) await this.pump;
      if (this.failure) {
        const { error } = this.failure;
        this.failure = null;
        throw error;
      }
      if (this.buffer.length >= limit || this.atHead) return this.buffer.splice(0, limit);
      this.pump = this.read(true, limit);
    }
  }

  /** Reads on, in the background, until `target` events are buffered (the next batch), the head, or a short overlapping read. */
  prefetch(target: number): void {
    if (this.pump || this.atHead || this.needClean || this.buffer.length >= target) return;
    this.pump = this.read(false, target);
  }

  /** Waits for reads in flight (their connections back in the pool), dropping what they return. */
  async close(): Promise<void> {
    while (this.pump) await this.pump;
    this.failure = null;
  }

  private async read(clean: boolean, target: number): Promise<void> {
    try {
      do {
        const events = await this.store.readAll({ after: this.tail, limit: this.readSize });
        const last = events.at(-1);
        if (last) this.tail = positionOf(last);
        for (const event of events) this.buffer.push(event);
        if (events.length < this.readSize) {
          if (clean) this.atHead = true;
          else this.needClean = true;
          return;
        }
        this.needClean = false;
      } while (this.buffer.length < target);
    } catch (error) {
      this.failure = { error };
    } finally {
      this.pump = null;
    }
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
