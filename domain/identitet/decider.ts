import type { Decider } from "../shared/decider.ts";
import { DomainError } from "../shared/errors.ts";
import type { GrantRole, IdentityCommand, RevokeRole } from "./commands.ts";
import type { IdentityEvent } from "./events.ts";
import { checkRole, normalizeRole, roleKey, type Role } from "./roles.ts";
import { checkSubject, type SubjectKind } from "./subjects.ts";

/**
 * A subject's grants: one aggregate per subject, stream `identity-<subject>`.
 * Grants of different subjects never constrain each other, so nothing wider
 * than the subject needs to be one consistency boundary.
 */
export interface SubjectGrantsState {
  /** Fixed by the subject's first grant; null while the stream is empty. */
  readonly kind: SubjectKind | null;
  /** Held roles, in grant order. */
  readonly roles: readonly Role[];
}

export const initialSubjectGrantsState: SubjectGrantsState = { kind: null, roles: [] };

export function holds(state: SubjectGrantsState, role: Role): boolean {
  const key = roleKey(role);
  return state.roles.some((held) => roleKey(held) === key);
}

function decideGrantRole(command: GrantRole, state: SubjectGrantsState): readonly IdentityEvent[] | DomainError {
  const invalid = checkSubject(command.subject) ?? checkRole(command.role);
  if (invalid) return invalid;
  // A subject is a person or a service for good: a token's `kind` and the audit trail rely on it.
  if (state.kind !== null && state.kind !== command.subjectKind) {
    return new DomainError(
      "subject_kind_mismatch",
      `subject ${command.subject} is a ${state.kind}, not a ${command.subjectKind}`,
      { subject: command.subject, kind: state.kind, requested: command.subjectKind },
    );
  }
  // Already held: success with no events (clients and sagas retry).
  if (holds(state, command.role)) return [];
  return [{ type: "RoleGranted", data: { subject: command.subject, subjectKind: command.subjectKind, role: normalizeRole(command.role) } }];
}

function decideRevokeRole(command: RevokeRole, state: SubjectGrantsState): readonly IdentityEvent[] | DomainError {
  const invalid = checkSubject(command.subject) ?? checkRole(command.role);
  if (invalid) return invalid;
  // Not held (never, or revoked already): the effect holds, nothing to record.
  if (!holds(state, command.role)) return [];
  return [{ type: "RoleRevoked", data: { subject: command.subject, role: normalizeRole(command.role) } }];
}

function decide(command: IdentityCommand, state: SubjectGrantsState): readonly IdentityEvent[] | DomainError {
  switch (command.type) {
    case "GrantRole":
      return decideGrantRole(command, state);
    case "RevokeRole":
      return decideRevokeRole(command, state);
    default:
      return unreachable(command);
  }
}

function evolve(state: SubjectGrantsState, event: IdentityEvent): SubjectGrantsState {
  switch (event.type) {
    case "RoleGranted":
      return {
        kind: state.kind ?? event.data.subjectKind,
        roles: holds(state, event.data.role) ? state.roles : [...state.roles, event.data.role],
      };
    case "RoleRevoked": {
      const key = roleKey(event.data.role);
      return { ...state, roles: state.roles.filter((held) => roleKey(held) !== key) };
    }
    default:
      return unreachable(event);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled identity message ${JSON.stringify(value)}`);
}

export const identityDecider: Decider<IdentityCommand, IdentityEvent, SubjectGrantsState> = {
  initialState: initialSubjectGrantsState,
  decide,
  evolve,
};
