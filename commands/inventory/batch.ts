import { v7 as uuidv7 } from "uuid";
import { ConcurrencyError } from "../../adapters/eventstore/errors.ts";
import type { LogPosition, NewEvent } from "../../adapters/eventstore/port.ts";
import { fold } from "../../domain/shared/decider.ts";
import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import { DomainError, isDomainError } from "../../domain/shared/errors.ts";
import { encodeEvent } from "../codec.ts";
import type { CommandContext, CommandHandler, DomainEvent, StreamVersion } from "../handler.ts";
import { loadStream, type CommandStore } from "../pipeline.ts";

/**
 * Several commands to one aggregate, decided in order against the state each
 * leaves, and appended together with the version they were decided on: an
 * import of a datacenter is all or nothing, on one stream. Commands are
 * already parsed (the caller built them from a validated document).
 */
export interface BatchOutcome<Event extends DomainEvent, State> {
  /** Per command: the events it decided, or the rule that refused it. */
  readonly decided: ReadonlyArray<readonly Event[] | DomainError>;
  /** The state after every accepted command (refused ones are skipped). */
  readonly state: State;
  readonly version: StreamVersion;
  /** Where the append ended (or the stream's last event when nothing was appended). */
  readonly position: LogPosition | null;
  readonly appended: number;
}

/** Decides without writing (a dry run, or the plan before writing). */
export async function decideBatch<Command, Event extends DomainEvent, State>(
  store: CommandStore,
  handler: CommandHandler<Command, Event, State>,
  streamId: string,
  commands: readonly Command[],
  initial?: { events: Event[]; version: StreamVersion; position: LogPosition | null },
): Promise<BatchOutcome<Event, State> & { events: Event[] }> {
  const loaded = initial ?? (await loadStream<Event>(store, streamId, handler.eventSchemas));
  let state = fold(handler.decider, loaded.events);
  const decided: Array<readonly Event[] | DomainError> = [];
  const events: Event[] = [];
  for (const command of commands) {
    const outcome = handler.decider.decide(command, state);
    decided.push(outcome);
    if (isDomainError(outcome)) continue;
    for (const event of outcome) {
      state = handler.decider.evolve(state, event);
      events.push(event);
    }
  }
  return { decided, state, version: loaded.version, position: loaded.position, appended: 0, events };
}

/**
 * Decides and appends. Refuses (throws the first DomainError) when any
 * command is refused, appending nothing. A lost optimistic-concurrency race
 * is decided again from a fresh load, up to `maxRetries` times.
 */
export async function executeBatch<Command, Event extends DomainEvent, State>(
  store: CommandStore,
  handler: CommandHandler<Command, Event, State>,
  streamId: string,
  commands: readonly Command[],
  context: CommandContext,
  maxRetries = 3,
): Promise<BatchOutcome<Event, State>> {
  for (let attempt = 1; ; attempt++) {
    const plan = await decideBatch(store, handler, streamId, commands);
    const refused = plan.decided.find(isDomainError);
    if (refused) throw refused;
    if (plan.events.length === 0) return plan;
    const newEvents: NewEvent[] = plan.events.map((event) => ({
      id: uuidv7(),
      type: event.type,
      ...encodeEvent(event, handler.eventSchemas),
      ...(context.occurredAt ? { occurredAt: context.occurredAt } : {}),
      correlationId: context.correlationId,
      causationId: context.causationId ?? null,
      actor: context.actor,
      scope: context.scope ?? { tenantId: PLATFORM_TENANT },
      datacenter: context.datacenter ?? null,
    }));
    try {
      const result = await store.append(streamId, newEvents, { expectedVersion: plan.version });
      return { ...plan, version: result.version, position: result.position, appended: newEvents.length };
    } catch (error) {
      if (!(error instanceof ConcurrencyError) || attempt > maxRetries) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
    }
  }
}

export { DomainError };
