import { ConcurrencyError, IdempotencyError } from "../../adapters/eventstore/errors.ts";
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
} from "../../adapters/eventstore/port.ts";
import { v7 as uuidv7 } from "uuid";

/**
 * A test double of the EventStore port: append and readStream with the real
 * optimistic-concurrency semantics (0-based versions, "no_stream", "exists",
 * "any", idempotent replays by event id), kept in memory. No hash chain, no
 * subscriptions. Each append gets its own transaction id.
 *
 * Hooks let a test put a competing write exactly where it wants it:
 * `beforeAppend` runs after the caller decided and before the version check.
 */
export class InMemoryEventStore implements EventStore {
  private readonly streams = new Map<string, RecordedEvent[]>();
  private readonly log: RecordedEvent[] = [];
  private nextTransactionId = 1n;
  readonly calls = { append: 0, readStream: 0, conflicts: 0 };
  beforeAppend: ((streamId: string, events: readonly NewEvent[]) => void | Promise<void>) | undefined;

  async append(
    streamId: string,
    events: readonly NewEvent[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    this.calls.append++;
    await this.beforeAppend?.(streamId, events);
    const stream = this.streams.get(streamId) ?? [];
    const actual = stream.length === 0 ? ("no_stream" as const) : stream.length - 1;

    const ids = events.map((event) => event.id).filter((id): id is string => id !== undefined);
    const known = this.log.filter((event) => ids.includes(event.id));
    if (known.length > 0) {
      const sameAppend = known.length === events.length && known.every((event) => event.streamId === streamId);
      if (!sameAppend) throw new IdempotencyError(streamId, known.map((event) => event.id));
      const last = known[known.length - 1]!;
      return {
        streamId,
        version: actual as number,
        position: { transactionId: last.transactionId, globalPosition: last.globalPosition },
        events: known.map(({ id, streamPosition, globalPosition }) => ({ id, streamPosition, globalPosition })),
        replayed: true,
      };
    }

    const { expectedVersion } = options;
    const ok =
      expectedVersion === "any" ||
      (expectedVersion === "exists" && actual !== "no_stream") ||
      expectedVersion === actual;
    if (!ok) {
      this.calls.conflicts++;
      throw new ConcurrencyError(streamId, expectedVersion, actual);
    }
    if (events.length === 0) throw new Error("an append needs at least one event");

    const transactionId = this.nextTransactionId++;
    const recorded = events.map((event, index): RecordedEvent => ({
      id: event.id ?? uuidv7(),
      type: event.type,
      schemaVersion: event.schemaVersion ?? 1,
      streamId,
      streamPosition: stream.length + index,
      globalPosition: BigInt(this.log.length + index + 1),
      transactionId,
      occurredAt: event.occurredAt ?? new Date(),
      correlationId: event.correlationId ?? uuidv7(),
      causationId: event.causationId ?? null,
      actor: event.actor,
      scope: event.scope,
      datacenter: event.datacenter ?? null,
      data: structuredClone(event.data),
      hash: "",
    }));
    this.streams.set(streamId, [...stream, ...recorded]);
    this.log.push(...recorded);
    const last = recorded[recorded.length - 1]!;
    return {
      streamId,
      version: last.streamPosition,
      position: { transactionId, globalPosition: last.globalPosition },
      events: recorded.map(({ id, streamPosition, globalPosition }) => ({ id, streamPosition, globalPosition })),
      replayed: false,
    };
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    this.calls.readStream++;
    const stream = this.streams.get(streamId) ?? [];
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    if (options.direction === "backward") {
      const from = options.from ?? stream.length - 1;
      return stream.filter((event) => event.streamPosition <= from).reverse().slice(0, limit);
    }
    const from = options.from ?? 0;
    return stream.filter((event) => event.streamPosition >= from).slice(0, limit);
  }

  /** Test helper: every event in append order. */
  allEvents(): readonly RecordedEvent[] {
    return this.log;
  }

  readAll(_options?: ReadAllOptions): Promise<RecordedEvent[]> {
    return notImplemented("readAll");
  }
  headPosition(): Promise<LogPosition> {
    return notImplemented("headPosition");
  }
  subscribe(): EventSubscription {
    throw new Error("subscribe is not implemented in the double");
  }
  verifyStream(_streamId: string): Promise<IntegrityReport> {
    return notImplemented("verifyStream");
  }
  verifyAll(): Promise<IntegrityReport> {
    return notImplemented("verifyAll");
  }
  async close(): Promise<void> {}
}

function notImplemented(method: string): Promise<never> {
  return Promise.reject(new Error(`${method} is not implemented in the double`));
}
