import { v7 as uuidv7 } from "uuid";
import { ConcurrencyError } from "../adapters/eventstore/errors.ts";
import type { AppendResult, EventStore, ExpectedVersion, LogPosition, NewEvent } from "../adapters/eventstore/port.ts";
import { fold } from "../domain/shared/decider.ts";
import { ActorSchema, PLATFORM_TENANT, ScopeSchema, type Scope } from "../domain/shared/envelope.ts";
import { isDomainError } from "../domain/shared/errors.ts";
import { decodeEvent, encodeEvent } from "./codec.ts";
import { CommandScopeError, CommandValidationError, EventDecodingError, toValidationIssues } from "./errors.ts";
import type {
  AppendedEvent,
  CommandContext,
  CommandHandler,
  CommandResult,
  DomainEvent,
  EventSchemaRegistry,
  ExecuteOptions,
  StreamVersion,
} from "./handler.ts";

/** The part of the event store the pipeline uses. */
export type CommandStore = Pick<EventStore, "append" | "readStream">;

const PAGE_SIZE = 1_000;
const DEFAULTS = { maxRetries: 3, baseDelayMs: 5, maxDelayMs: 50 } as const;

/**
 * Runs one command: validate -> load and fold the stream -> decide -> append
 * with the version it loaded. Throws:
 * - CommandValidationError: the input is not a command (every failing field listed);
 * - CommandScopeError: the command is about another tenant than the caller's scope;
 * - DomainError: a business rule refused it;
 * - ConcurrencyError: the stream moved (pinned expectedVersion), or kept moving
 *   through every retry (unpinned);
 * - EventDecodingError / EventEncodingError: the stream or the decider is broken.
 * Nothing is appended when it throws.
 *
 * Unpinned commands (no context.expectedVersion) that lose an optimistic
 * concurrency race are retried from the load, so they are decided again
 * against the winner's events (which may now refuse them).
 */
export async function executeCommand<Command, Event extends DomainEvent, State>(
  store: CommandStore,
  handler: CommandHandler<Command, Event, State>,
  input: unknown,
  context: CommandContext,
  options: ExecuteOptions = {},
): Promise<CommandResult<Event>> {
  checkContext(context);
  const command = parseCommand(handler, input);
  const streamId = handler.streamId(command);
  const scope = eventScope(handler, command, context);

  const maxRetries = options.maxRetries ?? DEFAULTS.maxRetries;
  const pinned = context.expectedVersion !== undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await attemptOnce(store, handler, command, streamId, scope, context, attempt);
    } catch (error) {
      if (!(error instanceof ConcurrencyError) || pinned || attempt > maxRetries) throw error;
      await backoff(attempt, options);
    }
  }
}

/** Parses input with the handler's schema, or throws CommandValidationError listing every failing field. */
export function parseCommand<Command>(handler: Pick<CommandHandler<Command, DomainEvent, unknown>, "commandSchema">, input: unknown): Command {
  const parsed = handler.commandSchema.safeParse(input);
  if (!parsed.success) throw new CommandValidationError(toValidationIssues(parsed.error));
  return parsed.data;
}

export interface LoadedStream<Event extends DomainEvent> {
  readonly events: Event[];
  readonly version: StreamVersion;
  /** Log position of the stream's last event; null when the stream is empty. */
  readonly position: LogPosition | null;
}

/** Reads a whole stream (in pages) and decodes it with the registry. */
export async function loadStream<Event extends DomainEvent>(
  store: Pick<EventStore, "readStream">,
  streamId: string,
  registry: EventSchemaRegistry,
): Promise<LoadedStream<Event>> {
  const events: Event[] = [];
  let position: LogPosition | null = null;
  for (let from = 0; ; ) {
    const page = await store.readStream(streamId, { from, limit: PAGE_SIZE, direction: "forward" });
    for (const recorded of page) {
      if (recorded.streamPosition !== from) {
        throw new EventDecodingError(streamId, recorded.streamPosition, recorded.type, "position_gap", `expected position ${from}`);
      }
      events.push(decodeEvent<Event>(recorded, registry));
      position = { transactionId: recorded.transactionId, globalPosition: recorded.globalPosition };
      from++;
    }
    if (page.length < PAGE_SIZE) break;
  }
  return { events, version: events.length === 0 ? "no_stream" : events.length - 1, position };
}

async function attemptOnce<Command, Event extends DomainEvent, State>(
  store: CommandStore,
  handler: CommandHandler<Command, Event, State>,
  command: Command,
  streamId: string,
  scope: Scope,
  context: CommandContext,
  attempt: number,
): Promise<CommandResult<Event>> {
  const loaded = await loadStream<Event>(store, streamId, handler.eventSchemas);
  if (context.expectedVersion !== undefined && !satisfies(loaded.version, context.expectedVersion)) {
    // The caller decided on a state that is gone: do not decide for them on another one.
    throw new ConcurrencyError(streamId, context.expectedVersion, loaded.version);
  }

  const state = fold(handler.decider, loaded.events);
  const decided = handler.decider.decide(command, state);
  if (isDomainError(decided)) throw decided;
  if (decided.length === 0) {
    return { streamId, version: loaded.version, position: loaded.position, events: [], attempts: attempt };
  }

  const drafts = decided.map((event) => ({ event, scope }));
  // Always the exact version decided on, even when the caller pinned something weaker ("any", "exists").
  const { result, events } = await appendDrafts(store, handler, streamId, drafts, loaded.version, context);
  return { streamId, version: result.version, position: result.position, events, attempts: attempt };
}

/** A stream's state as a caller already holds it (a cache): folded from every event up to `version`. */
export interface HeldStream<State> {
  readonly state: State;
  readonly version: StreamVersion;
  /** Log position of the stream's last event; null when the stream is empty. */
  readonly position: LogPosition | null;
}

/** One command decided on a held state and not stored yet: its events, and the state they lead to. */
export interface HeldDecision<Command, Event extends DomainEvent, State> {
  readonly command: Command;
  readonly events: readonly Event[];
  readonly scope: Scope;
  /** The state after these events (the input state when there are none). */
  readonly state: State;
}

/** Folds a held stream from a fresh read (loadStream + fold). */
export async function loadHeld<Event extends DomainEvent, State>(
  store: Pick<EventStore, "readStream">,
  handler: Pick<CommandHandler<unknown, Event, State>, "decider" | "eventSchemas">,
  streamId: string,
): Promise<HeldStream<State>> {
  const loaded = await loadStream<Event>(store, streamId, handler.eventSchemas);
  return { state: fold(handler.decider, loaded.events), version: loaded.version, position: loaded.position };
}

/**
 * Decides one command on a state the caller already holds, without reading
 * the stream: validate, scope, decide, and evolve the state by the decided
 * events (as encoded, i.e. as a later read would decode them). Pure. Throws
 * what executeCommand throws before it appends (CommandValidationError,
 * CommandScopeError, DomainError, EventEncodingError). Decide several in a
 * row by passing each decision's `state` to the next, then store them with
 * appendHeld in one append.
 */
export function decideHeld<Command, Event extends DomainEvent, State>(
  handler: CommandHandler<Command, Event, State>,
  input: unknown,
  state: State,
  context: CommandContext,
): HeldDecision<Command, Event, State> {
  checkContext(context);
  const command = parseCommand(handler, input);
  const scope = eventScope(handler, command, context);
  const decided = handler.decider.decide(command, state);
  if (isDomainError(decided)) throw decided;
  let next = state;
  for (const event of decided) {
    const { data } = encodeEvent(event, handler.eventSchemas);
    next = handler.decider.evolve(next, { type: event.type, data } as Event);
  }
  return { command, events: decided, scope, state: next };
}

/**
 * Stores decisions taken on `held` in ONE append, with expectedVersion =
 * held.version: a stream that moved since (another writer) fails the whole
 * append with ConcurrencyError and nothing is stored; the caller reloads
 * (loadHeld) and decides again on what is there now. Returns the append's
 * result and the held stream after it (the last decision's state).
 */
export async function appendHeld<Command, Event extends DomainEvent, State>(
  store: CommandStore,
  handler: CommandHandler<Command, Event, State>,
  streamId: string,
  held: HeldStream<State>,
  decisions: readonly HeldDecision<Command, Event, State>[],
  context: CommandContext,
): Promise<{ result: CommandResult<Event>; held: HeldStream<State> }> {
  checkContext(context);
  const last = decisions.at(-1);
  const drafts = decisions.flatMap((decision) => decision.events.map((event) => ({ event, scope: decision.scope })));
  if (!last || drafts.length === 0) {
    return { result: { streamId, version: held.version, position: held.position, events: [], attempts: 1 }, held: last ? { ...held, state: last.state } : held };
  }
  const { result: appended, events } = await appendDrafts(store, handler, streamId, drafts, held.version, context);
  return {
    result: { streamId, version: appended.version, position: appended.position, events, attempts: 1 },
    held: { state: last.state, version: appended.version, position: appended.position },
  };
}

/**
 * Encodes decided events with fresh ids and the envelope from `context`,
 * appends them with `expectedVersion` in one append, and returns them as
 * stored (ids, positions).
 */
async function appendDrafts<Command, Event extends DomainEvent, State>(
  store: CommandStore,
  handler: CommandHandler<Command, Event, State>,
  streamId: string,
  decided: ReadonlyArray<{ readonly event: Event; readonly scope: Scope }>,
  expectedVersion: ExpectedVersion,
  context: CommandContext,
): Promise<{ result: AppendResult; events: AppendedEvent<Event>[] }> {
  const drafts = decided.map(({ event, scope }) => ({ event, scope, id: uuidv7(), ...encodeEvent(event, handler.eventSchemas) }));
  const newEvents: NewEvent[] = drafts.map((draft) => ({
    id: draft.id,
    type: draft.event.type,
    schemaVersion: draft.schemaVersion,
    data: draft.data,
    ...(context.occurredAt ? { occurredAt: context.occurredAt } : {}),
    correlationId: context.correlationId,
    causationId: context.causationId ?? null,
    actor: context.actor,
    scope: draft.scope,
    datacenter: context.datacenter ?? null,
  }));
  const result = await store.append(streamId, newEvents, { expectedVersion });
  const events = drafts.map((draft, index): AppendedEvent<Event> => {
    const written = result.events[index];
    if (!written) throw new Error(`store reported ${result.events.length} events for an append of ${drafts.length}`);
    return {
      ...draft.event,
      data: draft.data,
      id: written.id,
      schemaVersion: draft.schemaVersion,
      streamPosition: written.streamPosition,
      globalPosition: written.globalPosition,
    } as AppendedEvent<Event>;
  });
  return { result, events };
}

function satisfies(actual: StreamVersion, expected: ExpectedVersion): boolean {
  switch (expected) {
    case "any":
      return true;
    case "exists":
      return actual !== "no_stream";
    case "no_stream":
      return actual === "no_stream";
    default:
      return actual === expected;
  }
}

function checkContext(context: CommandContext): void {
  // The context comes from our own code (API, sagas); a malformed one is a bug, not a bad request.
  ActorSchema.parse(context.actor);
  if (typeof context.correlationId !== "string" || context.correlationId.length === 0) {
    throw new TypeError("command context needs a correlationId");
  }
  if (context.scope !== undefined) ScopeSchema.parse(context.scope);
}

function eventScope<Command>(
  handler: CommandHandler<Command, DomainEvent, unknown>,
  command: Command,
  context: CommandContext,
): Scope {
  const derived = handler.scope?.(command);
  const caller = context.scope;
  if (!derived) {
    if (!caller) throw new TypeError(`handler ${handler.name} derives no scope and the context has none`);
    return caller;
  }
  if (caller && caller.tenantId !== PLATFORM_TENANT) {
    for (const field of ["tenantId", "projectId", "environmentId"] as const) {
      const mine = derived[field];
      const theirs = caller[field];
      if (mine !== undefined && theirs !== undefined && mine !== theirs) throw new CommandScopeError(field, mine, theirs);
    }
  }
  return derived;
}

async function backoff(attempt: number, options: ExecuteOptions): Promise<void> {
  const base = options.baseDelayMs ?? DEFAULTS.baseDelayMs;
  const max = options.maxDelayMs ?? DEFAULTS.maxDelayMs;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(max, base * 2 ** (attempt - 1));
  const delay = random() * ceiling;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  await sleep(delay);
}
