import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { ConcurrencyError, IdempotencyError } from "../errors.ts";
import { contentDigest } from "../hashing.ts";
import type {
  AppendResult,
  EventStore,
  EventSubscription,
  ExpectedVersion,
  IntegrityReport,
  LogPosition,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  SubscribeOptions,
} from "../port.ts";
import { START } from "../port.ts";
import { comparePositions, formatPosition } from "../position.ts";
import type { UpcasterRegistry } from "../upcasting.ts";
import {
  AppendBatcher,
  EXPECT_ANY,
  EXPECT_EXISTS,
  EXPECT_NO_STREAM,
  executeAppendBatch,
  type AppendBatcherOptions,
  type AppendOutcome,
  type PreparedEvent,
} from "./append-batcher.ts";
import { AppendNotifier } from "./append-notifier.ts";
import { sealLog, verifyLog, verifyStream, type Seal } from "./integrity.ts";
import { EVENT_COLUMNS, toRecordedEvent, type EventRow } from "./rows.ts";
import { createSubscription } from "./subscription.ts";

export interface PostgresEventStoreOptions {
  readonly pool: pg.Pool;
  /** For LISTEN; defaults to the pool's own connection string. */
  readonly connectionString?: string;
  readonly upcasters?: UpcasterRegistry;
  readonly batching?: AppendBatcherOptions;
}

const MAX_READ = 10_000;

/** Only rows whose writing transaction is older than every open one: their order is final. */
const FINAL_ORDER = "transaction_id < pg_snapshot_xmin(pg_current_snapshot())";

export class PostgresEventStore implements EventStore {
  private readonly pool: pg.Pool;
  private readonly upcasters: UpcasterRegistry | undefined;
  private readonly batcher: AppendBatcher;
  private readonly notifier: AppendNotifier;

  constructor(options: PostgresEventStoreOptions) {
    this.pool = options.pool;
    this.upcasters = options.upcasters;
    const connectionString = options.connectionString ?? (options.pool.options as { connectionString?: string }).connectionString;
    if (!connectionString) throw new Error("PostgresEventStore needs a connectionString (for LISTEN)");
    this.notifier = new AppendNotifier(connectionString);
    this.batcher = new AppendBatcher(options.pool, { ...options.batching, onCommitted: () => this.notifier.signal() });
  }

  async append(
    streamId: string,
    events: readonly NewEvent[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    validateStreamId(streamId);
    const expected = expectedCode(options.expectedVersion);
    const prepared = events.map((event) => prepare(streamId, event));
    const outcome = await this.batcher.submit({ streamId, expected, events: prepared });
    return toAppendResult(streamId, options.expectedVersion, prepared, outcome);
  }

  /**
   * Appends inside the caller's open transaction, so the events commit or roll
   * back together with the caller's other writes. Bypasses group commit.
   */
  async appendWithin(
    client: pg.PoolClient | pg.Client,
    streamId: string,
    events: readonly NewEvent[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    validateStreamId(streamId);
    const expected = expectedCode(options.expectedVersion);
    const prepared = events.map((event) => prepare(streamId, event));
    // The caller owns the transaction, so only Postgres knows when it commits: NOTIFY at commit.
    const [outcome] = await executeAppendBatch(client, [{ streamId, expected, events: prepared }], { notifyAtCommit: true });
    return toAppendResult(streamId, options.expectedVersion, prepared, outcome!);
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    const limit = clampLimit(options.limit, Number.MAX_SAFE_INTEGER);
    const backward = options.direction === "backward";
    const from = options.from ?? (backward ? Number.MAX_SAFE_INTEGER : 0);
    const { rows } = await this.pool.query<EventRow>(
      `select ${EVENT_COLUMNS} from eventstore.events
        where stream_id = $1 and stream_position ${backward ? "<=" : ">="} $2
        order by stream_position ${backward ? "desc" : "asc"} limit $3`,
      [streamId, from, limit === Number.MAX_SAFE_INTEGER ? null : limit],
    );
    return rows.map((row) => toRecordedEvent(row, this.upcasters));
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    const after = options.after ?? START;
    // eventstore.read_all walks the log-order index below the oldest open transaction (FINAL_ORDER).
    const { rows } = await this.pool.query<EventRow>(
      `select ${EVENT_COLUMNS} from eventstore.read_all($1::text::xid8, $2::bigint, $3::integer)`,
      [after.transactionId.toString(), after.globalPosition.toString(), clampLimit(options.limit, 1_000)],
    );
    return rows.map((row) => toRecordedEvent(row, this.upcasters));
  }

  async headPosition(): Promise<LogPosition> {
    const { rows } = await this.pool.query<{ txid: string; global_position: string }>(
      `select transaction_id::text as txid, global_position from eventstore.events
        where ${FINAL_ORDER} order by transaction_id desc, global_position desc limit 1`,
    );
    const row = rows[0];
    return row ? { transactionId: BigInt(row.txid), globalPosition: BigInt(row.global_position) } : START;
  }

  /**
   * Resolves once `position` is readable through readAll and subscriptions.
   * Any open writing transaction on the server (in any database: xids are
   * cluster-wide) holds readability back until it ends, so this can take as
   * long as the oldest open write transaction.
   */
  async waitUntilReadable(position: LogPosition, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let delay = 2;
    while (comparePositions(await this.headPosition(), position) < 0) {
      if (Date.now() > deadline) throw new Error(`position ${formatPosition(position)} not readable after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 50);
    }
  }

  /** Committed events that readAll holds back until an older open transaction ends. */
  async hasEventsBehindOpenTransaction(): Promise<boolean> {
    const { rows } = await this.pool.query<{ blocked: boolean }>(
      `select exists (select 1 from eventstore.events
        where transaction_id >= pg_snapshot_xmin(pg_current_snapshot())) as blocked`,
    );
    return rows[0]!.blocked;
  }

  subscribe(options: SubscribeOptions = {}): EventSubscription {
    return createSubscription(this, this.notifier, options);
  }

  verifyStream(streamId: string): Promise<IntegrityReport> {
    return verifyStream(this.pool, streamId);
  }

  verifyAll(): Promise<IntegrityReport> {
    return verifyLog(this.pool);
  }

  /** Anchors every event up to the readable head in a seal chained to the previous one. */
  seal(): Promise<Seal | null> {
    return sealLog(this.pool);
  }

  async close(): Promise<void> {
    await this.notifier.close();
  }
}

function toAppendResult(
  streamId: string,
  expectedVersion: ExpectedVersion,
  prepared: readonly PreparedEvent[],
  outcome: AppendOutcome,
): AppendResult {
  switch (outcome.status) {
    case "conflict":
      throw new ConcurrencyError(streamId, expectedVersion, outcome.version ?? "no_stream");
    case "idempotency_violation":
      throw new IdempotencyError(streamId, prepared.map((event) => event.id));
    case "ok":
    case "replayed": {
      const version = outcome.version ?? -1;
      const first = outcome.firstPosition ?? version + 1;
      const last = outcome.globalPositions.at(-1);
      return {
        streamId,
        version,
        replayed: outcome.status === "replayed",
        position:
          last === undefined || outcome.transactionId === null
            ? START
            : { transactionId: outcome.transactionId, globalPosition: last },
        events: prepared.map((event, index) => ({
          id: event.id,
          streamPosition: first + index,
          globalPosition: outcome.globalPositions[index]!,
        })),
      };
    }
  }
}

function prepare(streamId: string, event: NewEvent): PreparedEvent {
  const id = event.id ?? uuidv7();
  const schemaVersion = event.schemaVersion ?? 1;
  const occurredAt = event.occurredAt ?? new Date();
  // Serialize once: the text is stored, and its parse (what a reader gets back) is what is hashed.
  const dataJson = JSON.stringify(event.data) ?? "null";
  const metadataJson = JSON.stringify({
    correlationId: event.correlationId ?? id,
    causationId: event.causationId ?? null,
    actor: event.actor,
    scope: event.scope,
    datacenter: event.datacenter ?? null,
  });
  const digest = contentDigest({
    streamId,
    eventId: id,
    type: event.type,
    schemaVersion,
    occurredAt,
    data: JSON.parse(dataJson),
    metadata: JSON.parse(metadataJson),
  });
  return { id, type: event.type, schemaVersion, dataJson, metadataJson, tenantId: event.scope.tenantId, occurredAt, digest };
}

function expectedCode(expected: ExpectedVersion): bigint {
  switch (expected) {
    case "no_stream":
      return EXPECT_NO_STREAM;
    case "any":
      return EXPECT_ANY;
    case "exists":
      return EXPECT_EXISTS;
    default:
      if (!Number.isSafeInteger(expected) || expected < 0) throw new RangeError(`expected version must be a non-negative integer, got ${expected}`);
      return BigInt(expected);
  }
}

function validateStreamId(streamId: string): void {
  if (typeof streamId !== "string" || streamId.length === 0 || streamId.length > 200) {
    throw new RangeError("stream id must be 1 to 200 characters");
  }
}

function clampLimit(limit: number | undefined, fallback: number): number {
  if (limit === undefined) return fallback;
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
  return fallback === Number.MAX_SAFE_INTEGER ? limit : Math.min(limit, MAX_READ);
}
