import { expect } from "vitest";
import { fold, type Decider } from "../../../domain/shared/decider.ts";
import { DomainError } from "../../../domain/shared/errors.ts";

/**
 * Given events, when a command, then events (or a domain error).
 *
 *   const spec = deciderSpec(tenancyDecider);
 *   spec.given([created]).when(createProject).then([projectCreated]);
 *   spec.given([created, suspended]).when(createProject).thenFails("tenant_suspended");
 *
 * `then` also folds the new events onto the history, so an evolve that cannot
 * follow its own decide fails the test too. Each step returns what it checked
 * for further assertions.
 */
export function deciderSpec<C, E, S>(decider: Decider<C, E, S>) {
  return {
    given(history: readonly E[]) {
      return {
        when(command: C) {
          const state = fold(decider, history);
          const outcome = decider.decide(command, state);
          return {
            then(expected: readonly E[]): { events: readonly E[]; state: S } {
              if (outcome instanceof DomainError) {
                throw new Error(`expected events, got DomainError ${outcome.code}: ${outcome.message}`);
              }
              expect(outcome).toEqual(expected);
              return { events: outcome, state: fold(decider, [...history, ...outcome]) };
            },
            thenNothing(): void {
              if (outcome instanceof DomainError) {
                throw new Error(`expected no events, got DomainError ${outcome.code}: ${outcome.message}`);
              }
              expect(outcome).toEqual([]);
            },
            thenFails(code: string, details?: Record<string, unknown>): DomainError {
              if (!(outcome instanceof DomainError)) {
                throw new Error(`expected DomainError ${code}, got events ${JSON.stringify(outcome)}`);
              }
              expect(outcome.code).toBe(code);
              if (details) expect(outcome.details).toMatchObject(details);
              return outcome;
            },
          };
        },
      };
    },
  };
}
