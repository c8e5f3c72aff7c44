import type { Actor, Scope } from "../../domain/shared/envelope.ts";

/**
 * Where an event sits in the global log. Events are ordered by the pair
 * (transactionId, globalPosition): the writing transaction's id (xid8 in
 * Postgres) first, so a reader that only reads below the oldest transaction
 * still in flight can never skip an event that commits late.
 * Compare with `comparePositions`; never with globalPosition alone.
 */
export interface LogPosition {
  readonly transactionId: bigint;
  readonly globalPosition: bigint;
}

export const START: LogPosition = Object.freeze({ transactionId: 0n, globalPosition: 0n });

/**
 * Stream versions are the 0-based position of the stream's last event.
 * - number: the stream's current version must equal it
 * - "no_stream": the stream must not exist
 * - "exists": the stream must exist, any version
 * - "any": no check (writers to one stream queue behind each other)
 */
export type ExpectedVersion = number | "no_stream" | "exists" | "any";

export interface EventMetadata {
  readonly correlationId: string;
  readonly causationId: string | null;
  readonly actor: Actor;
  readonly scope: Scope;
  readonly datacenter: string | null;
}

/** An event as a writer hands it in. */
export interface NewEvent {
  /** UUIDv7; generated when absent. A retry must send the same ids to be idempotent. */
  readonly id?: string;
  readonly type: string;
  readonly schemaVersion?: number;
  readonly data: unknown;
  readonly occurredAt?: Date;
  readonly correlationId?: string;
  readonly causationId?: string | null;
  readonly actor: Actor;
  readonly scope: Scope;
  readonly datacenter?: string | null;
}

/** An event as it is stored, with its full envelope. */
export interface RecordedEvent<Data = unknown> extends EventMetadata {
  readonly id: string;
  readonly type: string;
  /** After upcasting: the version the registered upcasters brought it to. */
  readonly schemaVersion: number;
  readonly streamId: string;
  readonly streamPosition: number;
  readonly globalPosition: bigint;
  readonly transactionId: bigint;
  readonly occurredAt: Date;
  readonly data: Data;
  /** Hex SHA-256 of this event chained to the previous one in its stream. */
  readonly hash: string;
}

export interface AppendResult {
  readonly streamId: string;
  /** The stream's version after the append (its last event's position). */
  readonly version: number;
  /** Log position of the last event written; reads can wait for it. */
  readonly position: LogPosition;
  readonly events: ReadonlyArray<{ id: string; streamPosition: number; globalPosition: bigint }>;
  /** True when every event id was already stored: a retry, nothing was written. */
  readonly replayed: boolean;
}

export interface ReadStreamOptions {
  /** First position to return (inclusive). Backward reads default to the end. */
  readonly from?: number;
  readonly direction?: "forward" | "backward";
  readonly limit?: number;
}

export interface ReadAllOptions {
  /** Exclusive cursor; START when absent. */
  readonly after?: LogPosition;
  readonly limit?: number;
}

export interface SubscribeOptions {
  readonly after?: LogPosition;
  /** Events fetched per read while catching up. */
  readonly batchSize?: number;
}

/** Catch-up then live; iterate it, stop it when done. */
export interface EventSubscription extends AsyncIterable<RecordedEvent> {
  stop(): Promise<void>;
}

export interface IntegrityProblem {
  readonly streamId: string;
  readonly streamPosition?: number;
  readonly kind:
    | "content_mismatch"
    | "chain_broken"
    | "position_gap"
    | "head_mismatch"
    | "seal_mismatch";
  readonly detail: string;
}

export interface IntegrityReport {
  readonly ok: boolean;
  readonly streamsChecked: number;
  readonly eventsChecked: number;
  readonly problems: readonly IntegrityProblem[];
}

export interface EventStore {
  append(
    streamId: string,
    events: readonly NewEvent[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult>;
  readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  /** In log order, without gaps; only events whose order can no longer change. */
  readAll(options?: ReadAllOptions): Promise<RecordedEvent[]>;
  /** The position after which nothing committed yet is readable: the live head. */
  headPosition(): Promise<LogPosition>;
  subscribe(options?: SubscribeOptions): EventSubscription;
  verifyStream(streamId: string): Promise<IntegrityReport>;
  verifyAll(): Promise<IntegrityReport>;
  close(): Promise<void>;
}
