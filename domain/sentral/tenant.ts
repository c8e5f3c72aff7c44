import { DomainError } from "../shared/errors.ts";
import type { CreateTenant, RenameTenant, ResumeTenant, SuspendTenant } from "./commands.ts";
import type { TenancyEvent, TenancyEventOf } from "./events.ts";
import { checkName } from "./names.ts";
import { existing, newTenant, type ExistingTenant, type TenantState } from "./state.ts";

/** Rules about the tenant itself, plus the guards every other tenancy rule starts with. */

export function requireTenant(state: TenantState, tenantId: string): ExistingTenant | DomainError {
  if (state.status === "absent") {
    return new DomainError("tenant_not_found", `tenant ${tenantId} does not exist`, { tenantId });
  }
  if (state.tenantId !== tenantId) {
    // The pipeline loads the stream named after the command's tenant; anything else is a wiring bug.
    throw new Error(`decided a command for tenant ${tenantId} against the state of tenant ${state.tenantId}`);
  }
  return state;
}

/** A suspended tenant refuses every change except ResumeTenant, RenameTenant and (a no-op) SuspendTenant. */
export function requireActiveTenant(state: TenantState, tenantId: string): ExistingTenant | DomainError {
  const tenant = requireTenant(state, tenantId);
  if (tenant instanceof DomainError) return tenant;
  if (tenant.status === "suspended") {
    return new DomainError("tenant_suspended", `tenant ${tenant.name} is suspended: ${tenant.suspendedReason ?? ""}`, {
      tenantId,
      reason: tenant.suspendedReason,
    });
  }
  return tenant;
}

export function decideCreateTenant(command: CreateTenant, state: TenantState): TenancyEvent[] | DomainError {
  const invalid = checkName("tenant", command.name);
  if (invalid) return invalid;
  const displayName = command.displayName ?? null;
  if (state.status !== "absent") {
    // Answered by existence alone (suspension does not matter): the same create again is a retry.
    if (state.name === command.name && state.displayName === displayName) return [];
    return new DomainError("tenant_exists", `tenant ${command.tenantId} exists already (as ${state.name})`, {
      tenantId: command.tenantId,
      name: state.name,
    });
  }
  return [{ type: "TenantCreated", data: { tenantId: command.tenantId, name: command.name, displayName } }];
}

export function decideRenameTenant(command: RenameTenant, state: TenantState): TenancyEvent[] | DomainError {
  // Allowed while suspended: see README (a name dispute is a reason to suspend and a rename its remedy).
  const tenant = requireTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  const invalid = checkName("tenant", command.name);
  if (invalid) return invalid;
  const displayName = command.displayName === undefined ? tenant.displayName : command.displayName;
  if (tenant.name === command.name && tenant.displayName === displayName) return [];
  return [{ type: "TenantRenamed", data: { tenantId: tenant.tenantId, name: command.name, displayName } }];
}

export function decideSuspendTenant(command: SuspendTenant, state: TenantState): TenancyEvent[] | DomainError {
  const tenant = requireTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  // Suspended already: the effect holds; the first reason stands.
  if (tenant.status === "suspended") return [];
  return [{ type: "TenantSuspended", data: { tenantId: tenant.tenantId, reason: command.reason } }];
}

export function decideResumeTenant(command: ResumeTenant, state: TenantState): TenancyEvent[] | DomainError {
  const tenant = requireTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  if (tenant.status === "active") return [];
  return [{ type: "TenantResumed", data: { tenantId: tenant.tenantId } }];
}

export function evolveTenantCreated(state: TenantState, event: TenancyEventOf<"TenantCreated">): TenantState {
  const { tenantId, name, displayName } = event.data;
  return newTenant(tenantId, name, displayName);
}

export function evolveTenantRenamed(state: TenantState, event: TenancyEventOf<"TenantRenamed">): TenantState {
  const tenant = existing(state, event.type);
  return { ...tenant, name: event.data.name, displayName: event.data.displayName };
}

export function evolveTenantSuspended(state: TenantState, event: TenancyEventOf<"TenantSuspended">): TenantState {
  const tenant = existing(state, event.type);
  return { ...tenant, status: "suspended", suspendedReason: event.data.reason };
}

export function evolveTenantResumed(state: TenantState, event: TenancyEventOf<"TenantResumed">): TenantState {
  const tenant = existing(state, event.type);
  return { ...tenant, status: "active", suspendedReason: null };
}
