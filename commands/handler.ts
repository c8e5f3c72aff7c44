import type { z } from "zod";
import type { Decider } from "../domain/shared/decider.ts";
import type { Actor, Scope } from "../domain/shared/envelope.ts";
import type { ExpectedVersion, LogPosition } from "../adapters/eventstore/port.ts";

/** An event as deciders see it: no envelope. */
export interface DomainEvent {
  readonly type: string;
  readonly data: unknown;
}

/** Event type -> current schema version and the zod schema that validates its data. */
export type EventSchemaRegistry = Readonly<Record<string, { readonly schemaVersion: number; readonly schema: z.ZodType }>>;

/** What the pipeline needs to run one aggregate's commands. */
export interface CommandHandler<Command, Event extends DomainEvent, State> {
  /** For logs and errors, e.g. "sentral.tenant". */
  readonly name: string;
  readonly commandSchema: z.ZodType<Command>;
  readonly decider: Decider<Command, Event, State>;
  /** The stream holding the aggregate the command is about. */
  streamId(command: Command): string;
  readonly eventSchemas: EventSchemaRegistry;
  /** The scope events of this command are filed under; when absent (or it returns undefined), the context's scope is used. */
  scope?(command: Command): Scope | undefined;
}

export interface CommandContext {
  readonly actor: Actor;
  readonly correlationId: string;
  /** The event or command that caused this one (sagas); null/absent for a user's request. */
  readonly causationId?: string | null;
  /**
   * The caller's scope (from authentication). When the handler derives a scope
   * from the command, a command naming another tenant (or project/environment)
   * is refused with CommandScopeError, unless this is the platform scope.
   */
  readonly scope?: Scope;
  readonly datacenter?: string | null;
  /**
   * Pin the stream version the caller saw (HTTP If-Match). A pinned command is
   * never retried: a stream at another version fails with ConcurrencyError.
   */
  readonly expectedVersion?: ExpectedVersion;
  /** When the change happened; the store's clock when absent. */
  readonly occurredAt?: Date;
}

export interface ExecuteOptions {
  /** Retries after a concurrency conflict (unpinned commands only). Default 3. */
  readonly maxRetries?: number;
  /** Backoff before retry n is uniform in [0, min(maxDelayMs, baseDelayMs * 2^(n-1))). Defaults 5 and 50. */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Injected for tests. */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
}

/** The version a stream is at: its last event's 0-based position, or "no_stream". */
export type StreamVersion = number | "no_stream";

export type AppendedEvent<Event extends DomainEvent> = Event & {
  readonly id: string;
  readonly schemaVersion: number;
  readonly streamPosition: number;
  readonly globalPosition: bigint;
};

export interface CommandResult<Event extends DomainEvent> {
  readonly streamId: string;
  /** The stream's version after the command (unchanged when nothing was appended): use it as the ETag. */
  readonly version: StreamVersion;
  /**
   * The log position to wait for before reading (read-your-writes): that of the
   * last event appended or, when the command changed nothing, of the last event
   * it decided on. Null only when nothing was appended and the stream is empty.
   */
  readonly position: LogPosition | null;
  /** The events appended; empty when the command's effect already held (idempotent no-op). */
  readonly events: ReadonlyArray<AppendedEvent<Event>>;
  /** 1 + the number of retries after concurrency conflicts. */
  readonly attempts: number;
}
