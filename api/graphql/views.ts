import { QUOTA_RESOURCES, type QuotaResource } from "../../domain/sentral/limits.ts";
import { quotaLimitsOf, type EnvironmentRow, type ProjectRow, type QuotaRow, type TenantRow } from "../../projections/sentral/tenancy.ts";
import { environmentGlobalId, projectGlobalId, tenantGlobalId } from "./ids.ts";

/**
 * What the resolvers hand to graphql-js: read-model rows turned into the
 * shape of the GraphQL types (camelCase, enum names, global ids), tagged with
 * `__typename` so interfaces and unions resolve without a resolveType each.
 * Relationship fields (tenant, quota, projects, ...) have resolvers of their
 * own and read what they need from these.
 */
export interface TenantView {
  readonly __typename: "Tenant";
  readonly id: string;
  readonly tenantId: string;
  readonly name: string;
  readonly displayName: string | null;
  readonly status: "ACTIVE" | "SUSPENDED";
  readonly suspendedReason: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly streamVersion: number;
}

export interface ProjectView {
  readonly __typename: "Project";
  readonly id: string;
  readonly tenantId: string;
  readonly projectId: string;
  readonly name: string;
  readonly description: string | null;
  readonly status: "ACTIVE" | "ARCHIVED";
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface EnvironmentView {
  readonly __typename: "Environment";
  readonly id: string;
  readonly tenantId: string;
  readonly projectId: string;
  readonly environmentId: string;
  readonly name: string;
  readonly status: "ACTIVE" | "ARCHIVED";
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export type NodeView = TenantView | ProjectView | EnvironmentView;

export interface QuotaView {
  readonly limits: Readonly<Record<QuotaResource, number | null>>;
  readonly updatedAt: Date | null;
}

export function tenantView(row: TenantRow): TenantView {
  return {
    __typename: "Tenant",
    id: tenantGlobalId(row.tenant_id),
    tenantId: row.tenant_id,
    name: row.name,
    displayName: row.display_name,
    status: row.status === "suspended" ? "SUSPENDED" : "ACTIVE",
    suspendedReason: row.suspended_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    streamVersion: row.stream_version,
  };
}

export function projectView(row: ProjectRow): ProjectView {
  return {
    __typename: "Project",
    id: projectGlobalId(row.tenant_id, row.project_id),
    tenantId: row.tenant_id,
    projectId: row.project_id,
    name: row.name,
    description: row.description,
    status: row.status === "archived" ? "ARCHIVED" : "ACTIVE",
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function environmentView(row: EnvironmentRow): EnvironmentView {
  return {
    __typename: "Environment",
    id: environmentGlobalId(row.tenant_id, row.project_id, row.environment_id),
    tenantId: row.tenant_id,
    projectId: row.project_id,
    environmentId: row.environment_id,
    name: row.name,
    status: row.status === "archived" ? "ARCHIVED" : "ACTIVE",
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** No row: no limit was ever set, so everything is unlimited. */
export function quotaView(row: QuotaRow | null): QuotaView {
  const limits = row ? quotaLimitsOf(row) : {};
  const all = {} as Record<QuotaResource, number | null>;
  for (const resource of QUOTA_RESOURCES) all[resource] = limits[resource] ?? null;
  return { limits: all, updatedAt: row?.updated_at ?? null };
}

/** GraphQL enum value -> read-model status. */
export function statusFilter<T extends string>(value: string | null | undefined): T | undefined {
  return value === null || value === undefined ? undefined : (value.toLowerCase() as T);
}
