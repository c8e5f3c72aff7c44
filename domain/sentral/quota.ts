import { DomainError } from "../shared/errors.ts";
import type { SetProjectQuota, SetTenantQuota } from "./commands.ts";
import type { TenancyEvent, TenancyEventOf } from "./events.ts";
import { applyLimits, limitsChange, QUOTA_RESOURCES, type QuotaLimitsPatch, type QuotaResource } from "./limits.ts";
import { requireActiveProject } from "./project.ts";
import { activeProjects, existing, projectIn, withProject, type TenantState } from "./state.ts";
import { requireActiveTenant } from "./tenant.ts";

/**
 * Quota rules. Limits are caps, not reservations: the invariant is that no
 * active project's limit exceeds its tenant's limit for the same resource
 * (when the tenant has one). Project limits may add up to more than the
 * tenant's (overcommit); usage is enforced against both where resources are
 * allocated, not here. Archived projects' limits no longer count.
 */

function invalidLimits(patch: QuotaLimitsPatch): DomainError | undefined {
  const bad = QUOTA_RESOURCES.filter((resource) => {
    const value = patch[resource];
    return value !== undefined && value !== null && !(Number.isSafeInteger(value) && value >= 0);
  });
  if (bad.length === 0) return undefined;
  return new DomainError("invalid_quota", `limits must be non-negative integers: ${bad.join(", ")}`, {
    resources: bad,
  });
}

function setLimits(patch: QuotaLimitsPatch): Array<[QuotaResource, number]> {
  const result: Array<[QuotaResource, number]> = [];
  for (const resource of QUOTA_RESOURCES) {
    const value = patch[resource];
    if (typeof value === "number") result.push([resource, value]);
  }
  return result;
}

export function decideSetTenantQuota(command: SetTenantQuota, state: TenantState): TenancyEvent[] | DomainError {
  const tenant = requireActiveTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  const invalid = invalidLimits(command.limits);
  if (invalid) return invalid;
  const change = limitsChange(tenant.limits, command.limits);
  if (Object.keys(change).length === 0) return [];

  const violations = [];
  for (const [resource, tenantLimit] of setLimits(change)) {
    for (const project of activeProjects(tenant)) {
      const projectLimit = project.limits[resource];
      if (projectLimit !== undefined && projectLimit > tenantLimit) {
        violations.push({ projectId: project.projectId, projectName: project.name, resource, projectLimit, tenantLimit });
      }
    }
  }
  if (violations.length > 0) {
    const list = violations.map((v) => `${v.projectName} (${v.resource} ${v.projectLimit} > ${v.tenantLimit})`);
    return new DomainError(
      "quota_below_project_limit",
      `tenant limits would be below the limits of projects: ${list.join(", ")}; lower those first`,
      { tenantId: tenant.tenantId, violations },
    );
  }
  return [{ type: "TenantQuotaSet", data: { tenantId: tenant.tenantId, limits: change } }];
}

export function decideSetProjectQuota(command: SetProjectQuota, state: TenantState): TenancyEvent[] | DomainError {
  const tenant = requireActiveTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  const project = requireActiveProject(tenant, command.projectId);
  if (project instanceof DomainError) return project;
  const invalid = invalidLimits(command.limits);
  if (invalid) return invalid;
  const change = limitsChange(project.limits, command.limits);
  if (Object.keys(change).length === 0) return [];

  const violations = [];
  for (const [resource, projectLimit] of setLimits(change)) {
    const tenantLimit = tenant.limits[resource];
    if (tenantLimit !== undefined && projectLimit > tenantLimit) violations.push({ resource, projectLimit, tenantLimit });
  }
  if (violations.length > 0) {
    const list = violations.map((v) => `${v.resource} ${v.projectLimit} > ${v.tenantLimit}`);
    return new DomainError(
      "quota_exceeds_tenant_limit",
      `project ${project.name}'s limits would exceed the tenant's: ${list.join(", ")}`,
      { tenantId: tenant.tenantId, projectId: project.projectId, violations },
    );
  }
  return [{ type: "ProjectQuotaSet", data: { tenantId: tenant.tenantId, projectId: project.projectId, limits: change } }];
}

export function evolveTenantQuotaSet(state: TenantState, event: TenancyEventOf<"TenantQuotaSet">): TenantState {
  const tenant = existing(state, event.type);
  return { ...tenant, limits: applyLimits(tenant.limits, event.data.limits) };
}

export function evolveProjectQuotaSet(state: TenantState, event: TenancyEventOf<"ProjectQuotaSet">): TenantState {
  const tenant = existing(state, event.type);
  const project = projectIn(tenant, event.data.projectId, event.type);
  return withProject(tenant, { ...project, limits: applyLimits(project.limits, event.data.limits) });
}
