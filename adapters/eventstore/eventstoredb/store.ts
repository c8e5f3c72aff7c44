import {
  BACKWARDS,
  END,
  ErrorType,
  EventStoreDBClient,
  FORWARDS,
  NO_STREAM,
  START as ESDB_START,
  StreamDeletedError,
  StreamNotFoundError,
  WrongExpectedVersionError,
  excludeSystemEvents,
  jsonEvent,
  type AllStreamRecordedEvent,
  type AllStreamResolvedEvent,
  type AppendResult as EsdbAppendResult,
  type JSONType,
  type RecordedEvent as EsdbRecordedEvent,
  type StreamingRead,
} from "@eventstore/db-client";
import { v7 as uuidv7, validate as isUuid } from "uuid";
import { ConcurrencyError, IdempotencyError } from "../errors.ts";
import { EMPTY_HASH, chainHash, contentDigest, toJsonValue } from "../hashing.ts";
import {
  START,
  type AppendResult,
  type EventMetadata,
  type EventStore,
  type EventSubscription,
  type ExpectedVersion,
  type IntegrityProblem,
  type IntegrityReport,
  type LogPosition,
  type NewEvent,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type SubscribeOptions,
} from "../port.ts";
import { comparePositions, isStart } from "../position.ts";
import { UpcasterRegistry } from "../upcasting.ts";
import {
  decodeStored,
  encodeEnvelope,
  foreignReason,
  fromCurrentRevision,
  isSystemEvent,
  recomputeDigest,
  toEsdbPosition,
  toExpectedRevision,
  toLogPosition,
  toRecorded,
  type StoredEvent,
} from "./codec.ts";
import { EsdbEventSubscription } from "./subscription.ts";

/** The part of the official client this adapter uses (a fake can stand in for it in tests). */
export type EventStoreDbClientLike = Pick<
  EventStoreDBClient,
  "appendToStream" | "readStream" | "readAll" | "subscribeToAll" | "dispose"
>;

export interface EventStoreDbEventStoreOptions {
  /** e.g. `esdb://localhost:2113?tls=false`; see EventStoreDB's connection string docs. */
  readonly connectionString: string;
  readonly upcasters?: UpcasterRegistry;
  /**
   * How many of a stream's latest events (beyond the append's own count) an
   * append inspects for already-stored event ids. ESDB has no index by event
   * id, so retries older than this window are not recognised. Default 100.
   */
  readonly idempotencyWindow?: number;
  /** Bound on read-then-append rounds for "any"/"exists" writers racing on one stream. Default 100. */
  readonly maxAppendAttempts?: number;
  /** Use this client instead of one built from connectionString; close() disposes it. For tests. */
  readonly client?: EventStoreDbClientLike;
}

const DEFAULT_IDEMPOTENCY_WINDOW = 100;
const DEFAULT_MAX_APPEND_ATTEMPTS = 100;
const PAGE_SIZE = 1000;

interface PreparedEvent {
  readonly id: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly occurredAt: Date;
  readonly data: unknown;
  readonly metadata: EventMetadata;
  readonly digest: Buffer;
}

/**
 * The EventStore port on EventStoreDB/KurrentDB (22.6 or newer) through the
 * official gRPC client. Differences from the Postgres adapter are listed in
 * this folder's README.md.
 */
export class EventStoreDbEventStore implements EventStore {
  private readonly client: EventStoreDbClientLike;
  private readonly upcasters: UpcasterRegistry;
  private readonly idempotencyWindow: number;
  private readonly maxAppendAttempts: number;
  private readonly subscriptions = new Set<EsdbEventSubscription>();
  private closed = false;

  constructor(options: EventStoreDbEventStoreOptions) {
    this.client = options.client ?? EventStoreDBClient.connectionString(options.connectionString);
    this.upcasters = options.upcasters ?? new UpcasterRegistry();
    this.idempotencyWindow = Math.max(0, options.idempotencyWindow ?? DEFAULT_IDEMPOTENCY_WINDOW);
    this.maxAppendAttempts = Math.max(1, options.maxAppendAttempts ?? DEFAULT_MAX_APPEND_ATTEMPTS);
  }

  async append(
    streamId: string,
    events: readonly NewEvent[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    const { expectedVersion } = options;
    toExpectedRevision(expectedVersion); // validates it
    checkStreamId(streamId);
    const prepared = prepareEvents(streamId, events);

    for (let attempt = 1; ; attempt++) {
      const tail = await this.readTail(streamId, prepared.length + this.idempotencyWindow);
      const head = tail[0];

      // Like the Postgres store: a retry of an append that already committed wins over the version check.
      const replayed = replayOf(streamId, prepared, tail);
      if (replayed) return replayed;

      const actual = head ? head.streamPosition : "no_stream";
      if (!satisfies(expectedVersion, actual)) throw new ConcurrencyError(streamId, expectedVersion, actual);
      if (prepared.length === 0) {
        return {
          streamId,
          version: head ? head.streamPosition : -1,
          position: head ? head.position : START,
          events: [],
          replayed: false,
        };
      }

      // The hash chain continues from the head just read, so the append must land right behind it.
      const firstPosition = head ? head.streamPosition + 1 : 0;
      let previous = head ? hashFromHex(head) : EMPTY_HASH;
      const hashes = prepared.map((event, index) => (previous = chainHash(previous, firstPosition + index, event.digest)));
      const payload = prepared.map((event, index) =>
        jsonEvent({
          id: event.id,
          type: event.type,
          data: event.data as JSONType,
          metadata: encodeEnvelope(event.metadata, {
            occurredAt: event.occurredAt,
            schemaVersion: event.schemaVersion,
            contentDigest: event.digest,
            hash: hashes[index]!,
          }) as unknown as Record<string, unknown>,
        }),
      );

      let result: EsdbAppendResult;
      let conflict: number | "no_stream" | undefined;
      try {
        result = await this.client.appendToStream(streamId, payload, {
          expectedRevision: head ? BigInt(head.streamPosition) : NO_STREAM,
        });
        // Only when the connection string sets throwOnAppendFailure=false; its revision is unreliable then.
        if (!result.success) conflict = actual;
      } catch (error) {
        if (!isWrongExpectedVersion(error)) throw error;
        conflict = fromCurrentRevision(error.actualVersion);
      }
      if (conflict === undefined) return this.confirmAppend(streamId, prepared, hashes, firstPosition);

      // Someone wrote in between. Re-read: a concurrent retry of this same append shows up as a replay,
      // an exact expectation fails on the next round's check, "any"/"exists" writers try again behind it.
      if (attempt >= this.maxAppendAttempts) throw new ConcurrencyError(streamId, expectedVersion, conflict);
      await sleep(Math.random() * Math.min(100, 2 ** Math.min(attempt, 7)));
    }
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    const { from, direction = "forward", limit } = options;
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw new RangeError(`limit must be a non-negative integer: ${limit}`);
    if (from !== undefined && (!Number.isSafeInteger(from) || from < 0)) throw new RangeError(`from must be a non-negative integer: ${from}`);
    if (limit === 0) return [];
    const stored = await this.readStored(streamId, {
      direction: direction === "backward" ? BACKWARDS : FORWARDS,
      fromRevision: from !== undefined ? BigInt(from) : direction === "backward" ? END : ESDB_START,
      ...(limit !== undefined ? { maxCount: limit } : {}),
    });
    return stored.map((event) => this.toRecorded(event));
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    const { after, limit } = options;
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw new RangeError(`limit must be a non-negative integer: ${limit}`);
    if (limit === 0) return [];
    const pageSize = limit === undefined ? PAGE_SIZE : Math.min(PAGE_SIZE, Math.max(2, limit + 1));
    const events: RecordedEvent[] = [];
    for await (const event of this.scanAll(after, pageSize)) {
      if (isSystemEvent(event) || foreignReason(event) !== undefined) continue;
      events.push(this.toRecorded(decodeStored(event)));
      if (limit !== undefined && events.length >= limit) break;
    }
    return events;
  }

  async headPosition(): Promise<LogPosition> {
    // The newest event of ours in $all; ESDB's own bookkeeping ($stats, $metadata, …) is skipped.
    this.assertOpen();
    let cursor: LogPosition | undefined;
    // Usually the newest event is ours: start small, grow through runs of system events.
    for (let pageSize = 16; ; pageSize = Math.min(PAGE_SIZE, pageSize * 4)) {
      const page = await collect(
        this.client.readAll({
          direction: BACKWARDS,
          fromPosition: cursor ? toEsdbPosition(cursor) : END,
          maxCount: pageSize,
        }),
      );
      let advanced = false;
      for (const { event } of page) {
        if (!event) continue;
        const position = toLogPosition(event.position);
        // Whether a backward read includes its starting position or not, each event is looked at once.
        if (cursor && comparePositions(position, cursor) >= 0) continue;
        cursor = position;
        advanced = true;
        if (!isSystemEvent(event) && foreignReason(event) === undefined) return position;
      }
      if (page.length < pageSize || !advanced) return START;
    }
  }

  subscribe(options: SubscribeOptions = {}): EventSubscription {
    this.assertOpen();
    const after = options.after && !isStart(options.after) ? options.after : undefined;
    let cursor = after;
    const subscription = new EsdbEventSubscription(
      () =>
        this.client.subscribeToAll({
          fromPosition: after ? toEsdbPosition(after) : ESDB_START,
          filter: excludeSystemEvents(),
        }),
      (resolved: AllStreamResolvedEvent) => {
        const event = resolved.event;
        if (!event) return undefined;
        const position = toLogPosition(event.position);
        // Catch-up subscriptions start after fromPosition already; this also guards against a resend.
        if (cursor && comparePositions(position, cursor) <= 0) return undefined;
        cursor = position;
        if (isSystemEvent(event) || foreignReason(event) !== undefined) return undefined;
        return this.toRecorded(decodeStored(event));
      },
      (stopped) => this.subscriptions.delete(stopped),
    );
    this.subscriptions.add(subscription);
    return subscription;
  }

  async verifyStream(streamId: string): Promise<IntegrityReport> {
    const verifier = new StreamVerifier(streamId);
    for (const event of await this.readRaw(streamId, { direction: FORWARDS, fromRevision: ESDB_START })) {
      verifier.check(event);
    }
    return report(verifier.eventsChecked > 0 ? [verifier] : []);
  }

  /**
   * One pass over $all, each stream's chain checked in stream order. A stream
   * counts as ours from its first event carrying the envelope; streams of other
   * applications on the same server are left alone.
   */
  async verifyAll(): Promise<IntegrityReport> {
    const verifiers = new Map<string, StreamVerifier>();
    for await (const event of this.scanAll(undefined, PAGE_SIZE)) {
      if (isSystemEvent(event)) continue;
      let verifier = verifiers.get(event.streamId);
      if (!verifier) {
        if (foreignReason(event) !== undefined) continue;
        verifier = new StreamVerifier(event.streamId);
        verifiers.set(event.streamId, verifier);
      }
      verifier.check(event);
    }
    return report([...verifiers.values()]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.subscriptions].map((subscription) => subscription.stop()));
    await this.client.dispose();
  }

  private toRecorded(event: StoredEvent): RecordedEvent {
    return toRecorded(event, (type, schemaVersion, data) => this.upcasters.upcast(type, schemaVersion, data));
  }

  /** The stream's newest events, newest first; [] when it does not exist. */
  private readTail(streamId: string, count: number): Promise<StoredEvent[]> {
    return this.readStored(streamId, { direction: BACKWARDS, fromRevision: END, maxCount: Math.max(1, count) });
  }

  private async readStored(streamId: string, options: Parameters<EventStoreDbClientLike["readStream"]>[1]): Promise<StoredEvent[]> {
    return (await this.readRaw(streamId, options)).map((event) => decodeStored(event));
  }

  private async readRaw(streamId: string, options: Parameters<EventStoreDbClientLike["readStream"]>[1]): Promise<EsdbRecordedEvent[]> {
    this.assertOpen();
    try {
      const resolved = await collect(this.client.readStream(streamId, options));
      return resolved.flatMap((entry) => (entry.event ? [entry.event] : []));
    } catch (error) {
      if (isStreamMissing(error)) return [];
      throw error;
    }
  }

  /**
   * Every $all event strictly after `after`, in log order, system events
   * included. ESDB reads $all from a position inclusively, so each page starts
   * at the previous page's last position and drops what it has seen.
   */
  private async *scanAll(after: LogPosition | undefined, pageSize: number): AsyncGenerator<AllStreamRecordedEvent> {
    this.assertOpen();
    let cursor = after && !isStart(after) ? after : undefined;
    for (;;) {
      const read = this.client.readAll({
        direction: FORWARDS,
        fromPosition: cursor ? toEsdbPosition(cursor) : ESDB_START,
        maxCount: pageSize,
      });
      let received = 0;
      let advanced = false;
      let finished = false;
      try {
        for await (const { event } of read) {
          received += 1;
          if (!event) continue;
          const position = toLogPosition(event.position);
          if (cursor && comparePositions(position, cursor) <= 0) continue;
          cursor = position;
          advanced = true;
          yield event;
        }
        finished = true;
      } finally {
        if (!finished) await read.cancel().catch(() => {});
      }
      if (received < pageSize || !advanced) return;
      // A small first page suits a small limit; runs of skipped system events call for bigger ones.
      pageSize = Math.min(PAGE_SIZE, pageSize * 2);
    }
  }

  /** Reads back what was just written: its positions, and whether ESDB took it as a retry of an identical write. */
  private async confirmAppend(
    streamId: string,
    prepared: readonly PreparedEvent[],
    hashes: readonly Buffer[],
    firstPosition: number,
  ): Promise<AppendResult> {
    const written = await this.readStored(streamId, {
      direction: FORWARDS,
      fromRevision: BigInt(firstPosition),
      maxCount: prepared.length,
    });
    const mismatch = prepared.some((event, index) => written[index]?.id !== event.id);
    if (written.length !== prepared.length || mismatch) {
      throw new Error(
        `EventStoreDB acknowledged the append to ${streamId} at revision ${firstPosition}, ` +
          "but other events are stored there (was the stream deleted and recreated?)",
      );
    }
    // ESDB answers an identical retry against NO_STREAM with success and writes nothing: the stored hashes are the first write's.
    const replayed = written.some((event, index) => event.hash !== hashes[index]!.toString("hex"));
    return resultOf(streamId, written, replayed);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error("the EventStoreDB event store is closed");
  }
}

/** The EventStoreDB store when EVENTSTORE_URL is set (e.g. `esdb://localhost:2113?tls=false`), else undefined. */
export function createEventStoreDbStoreFromEnv(
  options: { upcasters?: UpcasterRegistry; env?: Record<string, string | undefined> } = {},
): EventStoreDbEventStore | undefined {
  const connectionString = (options.env ?? process.env).EVENTSTORE_URL?.trim();
  if (!connectionString) return undefined;
  return new EventStoreDbEventStore({
    connectionString,
    ...(options.upcasters ? { upcasters: options.upcasters } : {}),
  });
}

function checkStreamId(streamId: string): void {
  if (typeof streamId !== "string" || streamId.length === 0) throw new TypeError("stream id must be a non-empty string");
  if (streamId.startsWith("$")) throw new TypeError(`stream id ${JSON.stringify(streamId)} starts with "$", which EventStoreDB reserves for system streams`);
}

function prepareEvents(streamId: string, events: readonly NewEvent[]): PreparedEvent[] {
  // Fixed once per call, so the bounded retries inside append() resend identical content.
  const occurredNow = new Date();
  const prepared: PreparedEvent[] = [];
  const seen = new Set<string>();
  const duplicates = new Set<string>();
  for (const event of events) {
    const id = (event.id ?? uuidv7()).toLowerCase();
    if (!isUuid(id)) throw new TypeError(`event id is not a UUID: ${JSON.stringify(event.id)}`);
    if (seen.has(id)) duplicates.add(id);
    seen.add(id);
    if (typeof event.type !== "string" || event.type.length === 0) throw new TypeError("event type must be a non-empty string");
    if (event.type.startsWith("$")) {
      throw new TypeError(`event type ${JSON.stringify(event.type)} starts with "$", which EventStoreDB reserves for system events`);
    }
    const schemaVersion = event.schemaVersion ?? 1;
    if (!Number.isSafeInteger(schemaVersion) || schemaVersion < 1) throw new RangeError(`schemaVersion must be a positive integer: ${schemaVersion}`);
    const occurredAt = event.occurredAt ?? occurredNow;
    const data = toJsonValue(event.data);
    const metadata: EventMetadata = toJsonValue({
      // As in the Postgres store: an event without a correlation id starts its own.
      correlationId: event.correlationId ?? id,
      causationId: event.causationId ?? null,
      actor: event.actor,
      scope: event.scope,
      datacenter: event.datacenter ?? null,
    });
    const digest = contentDigest({ streamId, eventId: id, type: event.type, schemaVersion, occurredAt, data, metadata });
    prepared.push({ id, type: event.type, schemaVersion, occurredAt, data, metadata, digest });
  }
  if (duplicates.size > 0) throw new IdempotencyError(streamId, [...duplicates]);
  return prepared;
}

function satisfies(expected: ExpectedVersion, actual: number | "no_stream"): boolean {
  switch (expected) {
    case "any":
      return true;
    case "no_stream":
      return actual === "no_stream";
    case "exists":
      return actual !== "no_stream";
    default:
      return actual === expected;
  }
}

/** A replay when every id is among the stream's latest events; an IdempotencyError when only some are. */
function replayOf(streamId: string, prepared: readonly PreparedEvent[], tail: readonly StoredEvent[]): AppendResult | undefined {
  if (prepared.length === 0) return undefined;
  const byId = new Map(tail.map((event) => [event.id, event]));
  const found = prepared.flatMap((event) => byId.get(event.id) ?? []);
  if (found.length === 0) return undefined;
  if (found.length !== prepared.length) throw new IdempotencyError(streamId, found.map((event) => event.id));
  return resultOf(streamId, found, true);
}

function resultOf(streamId: string, events: readonly StoredEvent[], replayed: boolean): AppendResult {
  const last = events.reduce((a, b) => (b.streamPosition > a.streamPosition ? b : a));
  return {
    streamId,
    version: last.streamPosition,
    position: last.position,
    events: events.map((event) => ({
      id: event.id,
      streamPosition: event.streamPosition,
      globalPosition: event.position.globalPosition,
    })),
    replayed,
  };
}

function hashFromHex(head: StoredEvent): Buffer {
  if (!/^[0-9a-f]{64}$/i.test(head.hash)) {
    throw new Error(`${head.streamId}@${head.streamPosition} carries no valid hash; cannot continue its hash chain`);
  }
  return Buffer.from(head.hash, "hex");
}

function isWrongExpectedVersion(error: unknown): error is WrongExpectedVersionError {
  return (
    error instanceof WrongExpectedVersionError ||
    (error instanceof Error && (error as { type?: unknown }).type === ErrorType.WRONG_EXPECTED_VERSION)
  );
}

function isStreamMissing(error: unknown): boolean {
  if (error instanceof StreamNotFoundError || error instanceof StreamDeletedError) return true;
  const type = error instanceof Error ? (error as { type?: unknown }).type : undefined;
  return type === ErrorType.STREAM_NOT_FOUND || type === ErrorType.STREAM_DELETED;
}

async function collect<T>(read: StreamingRead<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of read) items.push(item);
  return items;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class StreamVerifier {
  readonly problems: IntegrityProblem[] = [];
  eventsChecked = 0;
  private previous: Buffer = EMPTY_HASH;
  private next = 0;

  constructor(readonly streamId: string) {}

  check(event: EsdbRecordedEvent): void {
    this.eventsChecked += 1;
    const streamPosition = Number(event.revision);
    if (streamPosition !== this.next) {
      this.problem(streamPosition, "position_gap", `expected position ${this.next}, found ${streamPosition}`);
    }
    this.next = streamPosition + 1;
    const reason = foreignReason(event);
    if (reason !== undefined) {
      this.problem(streamPosition, "content_mismatch", `event ${event.id}: ${reason}`);
      this.previous = EMPTY_HASH;
      return;
    }
    const stored = decodeStored(event);
    let digest: Buffer | undefined;
    try {
      digest = recomputeDigest(stored);
    } catch (error) {
      this.problem(streamPosition, "content_mismatch", `event ${stored.id}: content cannot be digested (${(error as Error).message})`);
    }
    if (digest && digest.toString("hex") !== stored.contentDigest.toLowerCase()) {
      this.problem(streamPosition, "content_mismatch", `event ${stored.id}: content digest ${digest.toString("hex")} differs from the stored ${stored.contentDigest}`);
    }
    // The chain covers the stored digests: changed content shows as content_mismatch, a changed digest or hash breaks the chain.
    const storedDigest = /^[0-9a-f]{64}$/i.test(stored.contentDigest) ? Buffer.from(stored.contentDigest, "hex") : undefined;
    const expected = storedDigest ? chainHash(this.previous, streamPosition, storedDigest).toString("hex") : undefined;
    if (expected === undefined || expected !== stored.hash.toLowerCase()) {
      this.problem(streamPosition, "chain_broken", `event ${stored.id}: hash ${stored.hash} does not follow from the previous hash and its digest`);
    }
    this.previous = /^[0-9a-f]{64}$/i.test(stored.hash) ? Buffer.from(stored.hash, "hex") : EMPTY_HASH;
  }

  private problem(streamPosition: number, kind: IntegrityProblem["kind"], detail: string): void {
    this.problems.push({ streamId: this.streamId, streamPosition, kind, detail });
  }
}

function report(verifiers: readonly StreamVerifier[]): IntegrityReport {
  const problems = verifiers.flatMap((verifier) => verifier.problems);
  return {
    ok: problems.length === 0,
    streamsChecked: verifiers.length,
    eventsChecked: verifiers.reduce((sum, verifier) => sum + verifier.eventsChecked, 0),
    problems,
  };
}
