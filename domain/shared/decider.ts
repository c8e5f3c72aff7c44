import type { DomainError } from "./errors.ts";

/**
 * A decider is one aggregate's business rules as three pure functions.
 * No clock, no randomness, no I/O: ids and time arrive inside the command.
 */
export interface Decider<Command, Event, State> {
  readonly initialState: State;
  decide(command: Command, state: State): readonly Event[] | DomainError;
  evolve(state: State, event: Event): State;
}

/** Folds a history into state; the one place a decider's evolve is looped. */
export function fold<Event, State>(
  decider: Pick<Decider<unknown, Event, State>, "initialState" | "evolve">,
  events: Iterable<Event>,
): State {
  let state = decider.initialState;
  for (const event of events) state = decider.evolve(state, event);
  return state;
}
