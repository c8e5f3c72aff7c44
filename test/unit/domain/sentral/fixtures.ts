import { tenancyDecider } from "../../../../domain/sentral/decider.ts";
import type { TenancyEvent, TenancyEventOf, TenancyEventType } from "../../../../domain/sentral/events.ts";
import { deciderSpec } from "../../support/decider-spec.ts";

export const spec = deciderSpec(tenancyDecider);

export const T = "0190d6a8-0000-7000-8000-000000000001";
export const P1 = "0190d6a8-0000-7000-8000-0000000000p1";
export const P2 = "0190d6a8-0000-7000-8000-0000000000p2";
export const E1 = "0190d6a8-0000-7000-8000-0000000000e1";
export const E2 = "0190d6a8-0000-7000-8000-0000000000e2";

function event<K extends TenancyEventType>(type: K, data: TenancyEventOf<K>["data"]): TenancyEvent {
  return { type, data } as TenancyEvent;
}

export const tenantCreated = (name = "acme", displayName: string | null = null) =>
  event("TenantCreated", { tenantId: T, name, displayName });
export const tenantSuspended = (reason = "unpaid invoices") => event("TenantSuspended", { tenantId: T, reason });
export const tenantResumed = () => event("TenantResumed", { tenantId: T });
export const tenantRenamed = (name: string, displayName: string | null = null) =>
  event("TenantRenamed", { tenantId: T, name, displayName });
export const projectCreated = (projectId = P1, name = "web", description: string | null = null) =>
  event("ProjectCreated", { tenantId: T, projectId, name, description });
export const projectArchived = (projectId = P1) => event("ProjectArchived", { tenantId: T, projectId });
export const environmentCreated = (environmentId = E1, name = "prod", projectId = P1) =>
  event("EnvironmentCreated", { tenantId: T, projectId, environmentId, name });
export const environmentArchived = (environmentId = E1, projectId = P1) =>
  event("EnvironmentArchived", { tenantId: T, projectId, environmentId });
export const tenantQuotaSet = (limits: TenancyEventOf<"TenantQuotaSet">["data"]["limits"]) =>
  event("TenantQuotaSet", { tenantId: T, limits });
export const projectQuotaSet = (limits: TenancyEventOf<"ProjectQuotaSet">["data"]["limits"], projectId = P1) =>
  event("ProjectQuotaSet", { tenantId: T, projectId, limits });
