import { Kysely, PostgresDialect } from "kysely";
import { setTimeout as wait } from "node:timers/promises";
import { Wake } from "../adapters/eventstore/wake.ts";
import type pg from "pg";
import type { EventStore, EventSubscription, LogPosition } from "../adapters/eventstore/port.ts";
import { START } from "../adapters/eventstore/port.ts";
import { comparePositions, formatPosition, parsePosition } from "../adapters/eventstore/position.ts";
import { DRIVER_LOCK_CLASS, applyBatch, readCheckpoint, readCheckpoints, readRebuild, recordFailure } from "./checkpoints.ts";
import { projectionChecksum, type ProjectionChecksum } from "./checksum.ts";
import {
  CheckpointMovedError,
  ProjectionNotSetUpError,
  ProjectionWaitTimeoutError,
  RebuildInProgressError,
  UnknownProjectionError,
  errorMessage,
} from "./errors.ts";
import { liveSchema, validateProjections, type AnyProjection } from "./projection.ts";
import { rebuildProjection, type RebuildOptions, type RebuildProgress, type RebuildResult } from "./rebuild.ts";
import { ensureProjectionSchemas, type SetupResult } from "./setup.ts";

/**
 * - catching_up: reading full batches, behind the head
 * - live: the last read reached the head; waiting for new events
 * - rebuilding: a rebuild is underway (a version change: live model frozen
 *   until the swap; a requested rebuild: live model still fed)
 * - failed: the last batch threw; rolled back and retried with backoff
 * - standby: another runner instance holds the projection's lock and drives it
 * - stopped: this runner is not running
 */
export type ProjectionState = "catching_up" | "live" | "rebuilding" | "failed" | "standby" | "stopped";

export interface ProjectionStatus {
  readonly name: string;
  readonly schema: string;
  readonly version: number;
  /** Version of the definition that built the served tables; differs from `version` until a rebuild swaps. */
  readonly definitionVersion: number | null;
  /** The live checkpoint, `"<transactionId>.<globalPosition>"`. */
  readonly position: string;
  readonly state: ProjectionState;
  /** Whether this instance holds the projection's lock. */
  readonly driving: boolean;
  /** Events in the log after the checkpoint (counted up to `lagProbeLimit`; see lagEventsExact). */
  readonly lagEvents: number;
  readonly lagEventsExact: boolean;
  /** Age of the oldest unapplied event (by its occurredAt); 0 when at the head. */
  readonly lagMs: number;
  readonly eventsApplied: number;
  readonly lastError: string | null;
  readonly lastErrorAt: Date | null;
  /** This process's rebuild progress, or the stored progress of a rebuild another process runs. */
  readonly rebuild: RebuildProgress | null;
}

export interface ProjectionRunnerOptions {
  readonly pool: pg.Pool;
  readonly store: EventStore;
  readonly projections: readonly AnyProjection[];
  /** Events per live transaction (default 500): small, so a batch commits soon after its first event. */
  readonly batchSize?: number;
  /** Most events per rebuild replay transaction (default 5,000; rebuild.ts bounds them in time too). */
  readonly rebuildBatchSize?: number;
  /** Re-read even without a wake-up from the store's subscription (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** How often a standby instance tries to take over a projection (default 2000 ms). */
  readonly standbyRetryMs?: number;
  /** Backoff after a failed batch: doubles from initialMs up to maxMs (defaults 500, 30000). */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** status() counts at most this many unapplied events per projection (default 1000). */
  readonly lagProbeLimit?: number;
  /** How often waitForPosition re-reads checkpoints that another instance advances (default 50 ms). */
  readonly waitPollMs?: number;
  /** Rebuild a projection whose stored definition version differs from its version (default true). */
  readonly rebuildOnVersionChange?: boolean;
  /** Called for every failed batch or rebuild (status() shows the last one too). */
  readonly onError?: (projection: string, error: unknown) => void;
}

interface Driver {
  readonly projection: AnyProjection;
  state: ProjectionState;
  /** Last checkpoint this instance read or committed; the compare-and-set expects it. */
  position: LogPosition | undefined;
  lastError: string | null;
  lastErrorAt: Date | null;
  failures: number;
  lastNoted?: unknown;
  rebuild: { progress: RebuildProgress | null; promise: Promise<RebuildResult> } | null;
  loop: Promise<void> | null;
}

interface Waiter {
  readonly names: readonly string[];
  readonly position: LogPosition;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Feeds projections from the event store: catch-up, then live.
 *
 * Per projection, one loop: read a batch after the checkpoint, apply it and
 * compare-and-set the checkpoint in one transaction (checkpoints.ts), repeat;
 * at the head, sleep until the store's subscription reports a new event (or
 * the poll interval passes). A session advisory lock per projection means one
 * runner instance drives it while others stand by and take over when its
 * connection goes; the compare-and-set makes a double apply impossible even
 * if two ever overlapped.
 *
 * The runner holds one pool connection for the locks, one for the store's
 * subscription inside the store, and up to one per projection while a batch
 * is in flight. It never ends the pool: the caller owns it.
 */
export class ProjectionRunner {
  readonly projections: readonly AnyProjection[];
  private readonly db: Kysely<any>;
  private readonly store: EventStore;
  private readonly pool: pg.Pool;
  private readonly options: ProjectionRunnerOptions;
  private readonly drivers = new Map<string, Driver>();
  private readonly wake = new Wake();
  private readonly locks: DriverLocks;
  private readonly waiters = new Set<Waiter>();
  /** Highest checkpoint seen per projection (local commits and polls): what waiters compare against. */
  private readonly known = new Map<string, LogPosition>();
  private waitPoll: NodeJS.Timeout | undefined;
  private running = false;
  private stopController = new AbortController();
  private feed: Promise<void> | null = null;
  private subscription: EventSubscription | null = null;

  constructor(options: ProjectionRunnerOptions) {
    validateProjections(options.projections);
    this.options = options;
    this.pool = options.pool;
    this.store = options.store;
    this.projections = options.projections;
    this.db = new Kysely<any>({ dialect: new PostgresDialect({ pool: options.pool }) });
    this.locks = new DriverLocks(options.pool);
    for (const projection of options.projections) {
      this.drivers.set(projection.name, {
        projection,
        state: "stopped",
        position: undefined,
        lastError: null,
        lastErrorAt: null,
        failures: 0,
        rebuild: null,
        loop: null,
      });
    }
  }

  /** Creates each projection's schema, tables and checkpoint when missing (npm run migrate does the same). */
  setup(): Promise<SetupResult[]> {
    return ensureProjectionSchemas(this.db, this.projections);
  }

  async start(): Promise<void> {
    if (this.running) return;
    await this.setup();
    this.running = true;
    this.stopController = new AbortController();
    this.feed = this.runWakeFeed();
    for (const driver of this.drivers.values()) {
      driver.state = "standby";
      driver.loop = this.drive(driver);
    }
  }

  /** Lets every in-flight batch finish (or roll back), then releases the locks. Rebuilds stop between batches and resume later. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopController.abort();
    this.wake.bump();
    await this.subscription?.stop().catch(() => {});
    await Promise.allSettled([...this.drivers.values()].map((driver) => driver.loop));
    await Promise.allSettled([...this.drivers.values()].map((driver) => driver.rebuild?.promise));
    await this.feed?.catch(() => {});
    await this.locks.releaseAll();
    for (const driver of this.drivers.values()) {
      driver.state = "stopped";
      driver.loop = null;
    }
  }

  async status(): Promise<ProjectionStatus[]> {
    const rows = await readCheckpoints(this.db, this.projections.map((p) => p.name));
    const head = await this.store.headPosition();
    const probeLimit = this.options.lagProbeLimit ?? 1000;
    const now = Date.now();
    const result: ProjectionStatus[] = [];
    for (const projection of this.projections) {
      const driver = this.drivers.get(projection.name)!;
      const row = rows.get(projection.name);
      const position = row?.position ?? START;
      let lagEvents = 0;
      let lagEventsExact = true;
      let lagMs = 0;
      if (comparePositions(position, head) < 0) {
        const pending = await this.store.readAll({ after: position, limit: probeLimit });
        lagEvents = pending.length;
        lagEventsExact = pending.length < probeLimit;
        if (pending[0]) lagMs = Math.max(0, now - pending[0].occurredAt.getTime());
      }
      let rebuild = driver.rebuild?.progress ?? null;
      if (!rebuild) {
        const stored = await readRebuild(this.db, projection.name);
        if (stored) {
          const seconds = (stored.updatedAt.getTime() - stored.startedAt.getTime()) / 1000;
          rebuild = {
            projection: projection.name,
            phase: "replaying",
            eventsApplied: Number(stored.eventsApplied),
            eventsPerSecond: seconds > 0 ? Math.round((Number(stored.eventsApplied) / seconds) * 10) / 10 : 0,
            position: formatPosition(stored.position),
            startedAt: stored.startedAt,
            resumed: false,
          };
        }
      }
      result.push({
        name: projection.name,
        schema: liveSchema(projection),
        version: projection.version,
        definitionVersion: row?.definitionVersion ?? null,
        position: formatPosition(position),
        state: driver.rebuild && driver.state !== "stopped" ? "rebuilding" : driver.state,
        driving: this.locks.holds(projection.name),
        lagEvents,
        lagEventsExact,
        lagMs,
        eventsApplied: Number(row?.eventsApplied ?? 0n),
        lastError: driver.lastError ?? row?.lastError ?? null,
        lastErrorAt: driver.lastErrorAt ?? row?.lastErrorAt ?? null,
        rebuild,
      });
    }
    return result;
  }

  /**
   * Read-your-writes: resolves once the named projection (or every one, with
   * "all") has applied the log up to `position`, compared as
   * (transactionId, globalPosition). Works whether this instance or another
   * one drives the projection. Rejects with ProjectionWaitTimeoutError.
   */
  async waitForPosition(target: string | "all", position: LogPosition | string, timeoutMs = 10_000): Promise<void> {
    const names = target === "all" ? this.projections.map((p) => p.name) : [target];
    for (const name of names) if (!this.drivers.has(name)) throw new UnknownProjectionError(name);
    const wanted = typeof position === "string" ? parsePosition(position) : position;
    if (this.reached(names, wanted)) return;
    await this.refreshKnown(names);
    if (this.reached(names, wanted)) return;
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        names,
        position: wanted,
        resolve: () => {
          clearTimeout(waiter.timer);
          this.waiters.delete(waiter);
          resolve();
        },
        reject: (error) => {
          clearTimeout(waiter.timer);
          this.waiters.delete(waiter);
          reject(error);
        },
        timer: setTimeout(() => {
          const reached: Record<string, string | null> = {};
          for (const name of names) {
            const at = this.known.get(name);
            if (!at || comparePositions(at, wanted) < 0) reached[name] = at ? formatPosition(at) : null;
          }
          waiter.reject(new ProjectionWaitTimeoutError(names, wanted, timeoutMs, reached));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
      this.scheduleWaitPoll();
    });
  }

  /**
   * Rebuilds one projection beside the live one and swaps it in (see
   * rebuild.ts). The live model keeps being served and fed meanwhile. Calling
   * it while this runner already rebuilds that projection returns the same rebuild.
   */
  rebuild(
    name: string,
    options: Omit<RebuildOptions, "db" | "store" | "projection" | "signal"> = {},
  ): Promise<RebuildResult> {
    const driver = this.drivers.get(name);
    if (!driver) return Promise.reject(new UnknownProjectionError(name));
    if (driver.rebuild) return driver.rebuild.promise;
    const slot: NonNullable<Driver["rebuild"]> = { progress: null, promise: Promise.resolve(null as never) };
    slot.promise = rebuildProjection({
      batchSize: this.options.rebuildBatchSize,
      ...options,
      db: this.db,
      store: this.store,
      projection: driver.projection,
      signal: this.stopController.signal.aborted ? undefined : this.stopController.signal,
      onProgress: (progress) => {
        slot.progress = progress;
        options.onProgress?.(progress);
      },
    })
      .then(async (result) => {
        if (result.swapped) {
          const checkpoint = await readCheckpoint(this.db, name);
          if (checkpoint) this.advanceKnown(name, checkpoint.position);
        }
        return result;
      })
      .catch((error: unknown) => {
        // Refused (someone else rebuilds) or stopped: not a failure of the projection.
        if (!(error instanceof RebuildInProgressError) && !isAbort(error)) this.noteError(driver, error);
        throw error;
      })
      .finally(() => {
        if (driver.rebuild === slot) driver.rebuild = null;
        this.wake.bump();
      });
    driver.rebuild = slot;
    return slot.promise;
  }

  /** The served model's checksum (the DR drill compares it with a rebuild's; rebuild() with verify does both at once). */
  checksum(name: string): Promise<ProjectionChecksum & { readonly position: string | null }> {
    const driver = this.drivers.get(name);
    if (!driver) return Promise.reject(new UnknownProjectionError(name));
    return projectionChecksum(this.db, driver.projection);
  }

  // --- the loop ---------------------------------------------------------------------------

  private async drive(driver: Driver): Promise<void> {
    const { projection } = driver;
    const name = projection.name;
    const batchSize = this.options.batchSize ?? 500;
    while (this.running) {
      try {
        if (!this.locks.holds(name)) {
          driver.position = undefined;
          if (!(await this.locks.tryAcquire(name))) {
            driver.state = "standby";
            await this.sleep(this.options.standbyRetryMs ?? 2000);
            continue;
          }
          driver.state = "catching_up";
        }
        if (!driver.position) {
          const checkpoint = await readCheckpoint(this.db, name);
          if (!checkpoint) throw new ProjectionNotSetUpError(name);
          if (checkpoint.definitionVersion !== projection.version) {
            await this.rebuildForVersion(driver, checkpoint.definitionVersion);
            continue;
          }
          driver.position = checkpoint.position;
          this.advanceKnown(name, checkpoint.position);
        }

        const seen = this.wake.generation;
        const events = await this.store.readAll({ after: driver.position, limit: batchSize });
        if (events.length === 0) {
          this.recovered(driver);
          driver.state = "live";
          await this.wake.wait(seen, this.options.pollIntervalMs ?? 1000);
          continue;
        }
        driver.position = await applyBatch(this.db, "checkpoints", projection, liveSchema(projection), driver.position, events);
        this.recovered(driver);
        driver.state = events.length < batchSize ? "live" : "catching_up";
        this.advanceKnown(name, driver.position);
      } catch (error) {
        if (error instanceof CheckpointMovedError) {
          // A rebuild swapped, or another instance applied: re-read and go on, nothing was applied here.
          driver.position = undefined;
          continue;
        }
        if (!this.running) break;
        this.noteError(driver, error);
        driver.position = undefined;
        // Stored first, so whoever sees the state "failed" also finds the error in the table.
        await recordFailure(this.db, name, errorMessage(error)).catch(() => {});
        driver.state = "failed";
        const retry = this.options.retry ?? {};
        const delay = Math.min((retry.initialMs ?? 500) * 2 ** Math.min(driver.failures - 1, 16), retry.maxMs ?? 30_000);
        await this.sleep(delay);
      }
    }
    driver.state = "stopped";
  }

  /** The served tables were built by another definition: keep serving them unchanged and rebuild beside them. */
  private async rebuildForVersion(driver: Driver, stored: number | null): Promise<void> {
    const name = driver.projection.name;
    if (stored !== null && stored > driver.projection.version) {
      // A newer instance rebuilt it already (rolling deploy): never rebuild backwards.
      throw new Error(
        `projection ${name}: the served tables come from definition version ${stored}, newer than this code's ${driver.projection.version}; not touching them`,
      );
    }
    if (this.options.rebuildOnVersionChange === false) {
      throw new Error(
        `projection ${name}: tables were built by definition version ${stored ?? "unknown"}, the code is version ${driver.projection.version}; rebuild it`,
      );
    }
    driver.state = "rebuilding";
    try {
      await this.rebuild(name, { verify: false });
    } catch (error) {
      if (error instanceof RebuildInProgressError) {
        // Another process rebuilds it; its swap will move the checkpoint and the version.
        await this.sleep(this.options.standbyRetryMs ?? 2000);
        return;
      }
      throw error;
    }
    driver.position = undefined;
  }

  private recovered(driver: Driver): void {
    driver.lastNoted = undefined;
    driver.failures = 0;
    driver.lastError = null;
    driver.lastErrorAt = null;
  }

  private noteError(driver: Driver, error: unknown): void {
    if (driver.lastNoted === error) return; // a rebuild's failure reaches the loop too
    driver.lastNoted = error;
    driver.failures += 1;
    driver.lastError = errorMessage(error);
    driver.lastErrorAt = new Date();
    this.options.onError?.(driver.projection.name, error);
  }

  /** Waits ms, or less when stopping (an aborted wait resolves: the loop then sees it is stopping). */
  private sleep(ms: number): Promise<void> {
    return wait(ms, undefined, { signal: this.stopController.signal }).catch(() => undefined);
  }

  /** Wakes the loops when the store reports a new event; the subscription is only a doorbell, loops read in batches. */
  private async runWakeFeed(): Promise<void> {
    while (this.running) {
      try {
        const subscription = this.store.subscribe({ after: await this.store.headPosition(), batchSize: 100 });
        this.subscription = subscription;
        if (!this.running) await subscription.stop();
        for await (const _event of subscription) {
          this.wake.bump();
          if (!this.running) break;
        }
      } catch {
        // The loops still poll; retry the doorbell shortly.
      } finally {
        await this.subscription?.stop().catch(() => {});
        this.subscription = null;
      }
      if (this.running) await this.sleep(1000);
    }
  }

  // --- read-your-writes ---------------------------------------------------------------------

  private reached(names: readonly string[], position: LogPosition): boolean {
    return names.every((name) => {
      const at = this.known.get(name);
      return at !== undefined && comparePositions(at, position) >= 0;
    });
  }

  private advanceKnown(name: string, position: LogPosition): void {
    const at = this.known.get(name);
    if (at && comparePositions(at, position) >= 0) return;
    this.known.set(name, position);
    for (const waiter of [...this.waiters]) if (this.reached(waiter.names, waiter.position)) waiter.resolve();
  }

  private async refreshKnown(names: readonly string[]): Promise<void> {
    const rows = await readCheckpoints(this.db, names);
    for (const [name, row] of rows) this.advanceKnown(name, row.position);
  }

  private scheduleWaitPoll(): void {
    if (this.waitPoll || this.waiters.size === 0) return;
    this.waitPoll = setTimeout(async () => {
      try {
        const names = new Set<string>();
        for (const waiter of this.waiters) for (const name of waiter.names) names.add(name);
        if (names.size) await this.refreshKnown([...names]);
      } catch {
        // Transient: the next poll or a local commit resolves the waiters; their timeout bounds it.
      } finally {
        this.waitPoll = undefined;
        this.scheduleWaitPoll();
      }
    }, this.options.waitPollMs ?? 50);
    this.waitPoll.unref();
  }
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

/**
 * Session advisory locks on one dedicated connection: "this instance drives
 * projection X". If the connection is lost, every lock is gone with it, and
 * the loops notice (holds() turns false) and try to take them again.
 */
class DriverLocks {
  private client: pg.PoolClient | undefined;
  private connecting: Promise<pg.PoolClient> | undefined;
  private readonly held = new Set<string>();

  constructor(private readonly pool: pg.Pool) {}

  holds(name: string): boolean {
    return this.held.has(name);
  }

  /** Every projection's driver asks on the one session: one query at a time (pg clients do not queue safely). */
  private queue: Promise<unknown> = Promise.resolve();

  tryAcquire(name: string): Promise<boolean> {
    const attempt = this.queue.then(async () => {
      const client = await this.connection();
      const { rows } = await client.query<{ locked: boolean }>("select pg_try_advisory_lock($1, hashtext($2)) as locked", [
        DRIVER_LOCK_CLASS,
        name,
      ]);
      if (rows[0]?.locked && this.client === client) this.held.add(name);
      return this.held.has(name);
    });
    this.queue = attempt.catch(() => undefined);
    return attempt;
  }

  releaseAll(): Promise<void> {
    const release = this.queue.then(() => this.releaseNow());
    this.queue = release.catch(() => undefined);
    return release;
  }

  private async releaseNow(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.held.clear();
    if (!client) return;
    try {
      await client.query("select pg_advisory_unlock_all()");
      client.release();
    } catch (error) {
      client.release(error as Error);
    }
  }

  private connection(): Promise<pg.PoolClient> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.pool
      .connect()
      .then((client) => {
        client.on("error", (error) => {
          if (this.client !== client) return;
          this.client = undefined;
          this.held.clear();
          client.release(error);
        });
        this.client = client;
        return client;
      })
      .finally(() => {
        this.connecting = undefined;
      });
    return this.connecting;
  }
}
