import type { Decider } from "../shared/decider.ts";
import type { DomainError } from "../shared/errors.ts";
import type { TenancyCommand } from "./commands.ts";
import { decideArchiveEnvironment, decideCreateEnvironment, evolveEnvironmentArchived, evolveEnvironmentCreated } from "./environment.ts";
import type { TenancyEvent } from "./events.ts";
import { decideArchiveProject, decideCreateProject, evolveProjectArchived, evolveProjectCreated } from "./project.ts";
import { decideSetProjectQuota, decideSetTenantQuota, evolveProjectQuotaSet, evolveTenantQuotaSet } from "./quota.ts";
import { initialTenantState, type TenantState } from "./state.ts";
import {
  decideCreateTenant,
  decideRenameTenant,
  decideResumeTenant,
  decideSuspendTenant,
  evolveTenantCreated,
  evolveTenantRenamed,
  evolveTenantResumed,
  evolveTenantSuspended,
} from "./tenant.ts";

/**
 * The tenant aggregate: one decider over the tenant stream, composed from the
 * per-entity rules in tenant.ts, project.ts, environment.ts and quota.ts.
 */

function decide(command: TenancyCommand, state: TenantState): readonly TenancyEvent[] | DomainError {
  switch (command.type) {
    case "CreateTenant":
      return decideCreateTenant(command, state);
    case "RenameTenant":
      return decideRenameTenant(command, state);
    case "SuspendTenant":
      return decideSuspendTenant(command, state);
    case "ResumeTenant":
      return decideResumeTenant(command, state);
    case "CreateProject":
      return decideCreateProject(command, state);
    case "ArchiveProject":
      return decideArchiveProject(command, state);
    case "CreateEnvironment":
      return decideCreateEnvironment(command, state);
    case "ArchiveEnvironment":
      return decideArchiveEnvironment(command, state);
    case "SetTenantQuota":
      return decideSetTenantQuota(command, state);
    case "SetProjectQuota":
      return decideSetProjectQuota(command, state);
    default:
      return unreachable(command);
  }
}

function evolve(state: TenantState, event: TenancyEvent): TenantState {
  switch (event.type) {
    case "TenantCreated":
      return evolveTenantCreated(state, event);
    case "TenantRenamed":
      return evolveTenantRenamed(state, event);
    case "TenantSuspended":
      return evolveTenantSuspended(state, event);
    case "TenantResumed":
      return evolveTenantResumed(state, event);
    case "ProjectCreated":
      return evolveProjectCreated(state, event);
    case "ProjectArchived":
      return evolveProjectArchived(state, event);
    case "ProjectBootstrapRequested":
      return state; // a request for the saga; the tenant's rules don't depend on it
    case "EnvironmentCreated":
      return evolveEnvironmentCreated(state, event);
    case "EnvironmentArchived":
      return evolveEnvironmentArchived(state, event);
    case "TenantQuotaSet":
      return evolveTenantQuotaSet(state, event);
    case "ProjectQuotaSet":
      return evolveProjectQuotaSet(state, event);
    default:
      return unreachable(event);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled tenancy message ${JSON.stringify(value)}`);
}

export const tenancyDecider: Decider<TenancyCommand, TenancyEvent, TenantState> = {
  initialState: initialTenantState,
  decide,
  evolve,
};
