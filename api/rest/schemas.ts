import { z } from "zod";
import { QUOTA_RESOURCES, type QuotaLimits } from "../../domain/sentral/limits.ts";
import { DescriptionSchema, DisplayNameSchema, IdSchema, NameSchema } from "../../domain/sentral/names.ts";
import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import type { EnvironmentRow, ProjectRow, TenantRow } from "../../projections/sentral/tenancy.ts";
import { pageSchema } from "../http/pagination.ts";
import type { QuotaView } from "../read/tenancy.ts";
import { CLIENT_ID_MESSAGE, CLIENT_ID_PATTERN, PLATFORM_SCOPE_MESSAGE } from "../http/client-id.ts";

/**
 * Request and response shapes of the REST API, built from the domain's own
 * schemas (names, ids, quota limits), so the HTTP layer refuses exactly what
 * the commands would. The OpenAPI document is generated from these.
 * Response schemas are registered in `apiSchemas` under their component name.
 */
export const apiSchemas = z.registry<{ id: string; description?: string }>();

/** Rendered by this API from Dates (toISOString), so documented, not re-checked on the way out. */
const Timestamp = z.string().meta({ format: "date-time", description: "RFC 3339 timestamp (UTC)" });

// ---- path params ---------------------------------------------------------

export const TenantParams = z.object({ tenantId: IdSchema });
export const ProjectParams = z.object({ tenantId: IdSchema, projectId: IdSchema });
export const EnvironmentParams = z.object({ tenantId: IdSchema, projectId: IdSchema, environmentId: IdSchema });

// ---- resources -----------------------------------------------------------

export const TenantSchema = z.object({
  id: z.string(),
  name: z.string(),
  displayName: z.string().nullable(),
  status: z.enum(["active", "suspended"]),
  suspendedReason: z.string().nullable(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
apiSchemas.add(TenantSchema, { id: "Tenant", description: "A tenant: the unit of isolation, billing and quota" });

export const ProjectSchema = z.object({
  id: z.string(),
  tenantId: z.string(),
  name: z.string(),
  description: z.string().nullable(),
  status: z.enum(["active", "archived"]),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
apiSchemas.add(ProjectSchema, { id: "Project" });

export const EnvironmentSchema = z.object({
  id: z.string(),
  tenantId: z.string(),
  projectId: z.string(),
  name: z.string(),
  status: z.enum(["active", "archived"]),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
apiSchemas.add(EnvironmentSchema, { id: "Environment" });

const LimitOut = z.int().nonnegative().nullable();
export const QuotaLimitsSchema = z.object({
  vcpus: LimitOut,
  memoryMiB: LimitOut,
  vms: LimitOut,
  hosts: LimitOut,
  networks: LimitOut,
  buckets: LimitOut,
});

export const QuotaSchema = z.object({
  scope: z.enum(["tenant", "project"]),
  tenantId: z.string(),
  projectId: z.string().nullable(),
  limits: QuotaLimitsSchema.describe("Per resource: the cap, or null for no limit"),
  updatedAt: Timestamp.nullable().describe("When a limit last changed; null if none was ever set"),
});
apiSchemas.add(QuotaSchema, { id: "Quota" });

export const TenantPage = pageSchema(TenantSchema);
export const ProjectPage = pageSchema(ProjectSchema);
export const EnvironmentPage = pageSchema(EnvironmentSchema);

/** 202: the write is durable but the read model had not applied it within the bound. */
export const AcceptedSchema = z.object({
  status: z.literal("accepted"),
  position: z.string().describe("The write's log position; read with ?minPosition= to see it"),
  location: z.string().describe("Where the resource will be readable"),
});
apiSchemas.add(AcceptedSchema, { id: "Accepted" });

// ---- request bodies --------------------------------------------------------

/** A client-chosen id ends up in URLs: URL-safe characters only (RFC 3986 unreserved). */
const ClientId = IdSchema.regex(CLIENT_ID_PATTERN, { message: CLIENT_ID_MESSAGE }).describe(
  "Client-chosen id (URL-safe); a UUIDv7 is generated when absent",
);

export const CreateTenantBody = z.strictObject({
  id: ClientId.refine((id) => id !== PLATFORM_TENANT, { message: PLATFORM_SCOPE_MESSAGE }).optional(),
  name: NameSchema,
  displayName: DisplayNameSchema.optional(),
});

export const UpdateTenantBody = z
  .strictObject({
    name: NameSchema.optional(),
    displayName: DisplayNameSchema.nullable().optional().describe("null clears it"),
  })
  .refine((body) => body.name !== undefined || body.displayName !== undefined, {
    message: "name or displayName is required",
  });

export const SuspendTenantBody = z.strictObject({
  reason: z.string().trim().min(1, { message: "a reason is required" }).max(1000),
});

/** Actions without parameters take no body, or `{}`. */
export const EmptyBody = z.strictObject({}).nullish();

export const CreateProjectBody = z.strictObject({
  id: ClientId.optional(),
  name: NameSchema,
  description: DescriptionSchema.optional(),
  /** Also create the default environments (dev, prod) and apply the tenant's quota, as a task (its id in X-Dv-Task). */
  withDefaultEnvironments: z.boolean().optional(),
});

export const CreateEnvironmentBody = z.strictObject({
  id: ClientId.optional(),
  name: NameSchema,
});

const LimitIn = z.int().nonnegative().nullable().optional();
/** PUT replaces the whole quota: a resource that is absent or null has no limit afterwards. */
export const PutQuotaBody = z.strictObject({
  limits: z.strictObject({
    vcpus: LimitIn,
    memoryMiB: LimitIn,
    vms: LimitIn,
    hosts: LimitIn,
    networks: LimitIn,
    buckets: LimitIn,
  }),
});

// ---- query strings -----------------------------------------------------------

export const TenantListFilter = z.object({
  name: NameSchema.optional().describe("Only the tenant(s) with this name"),
  status: z.enum(["active", "suspended"]).optional(),
});
export const LifecycleListFilter = z.object({
  name: NameSchema.optional().describe("Only rows with this name"),
  status: z.enum(["active", "archived"]).optional(),
});

// ---- rendering -----------------------------------------------------------------

const iso = (date: Date) => date.toISOString();

export function renderTenant(row: TenantRow): z.infer<typeof TenantSchema> {
  return {
    id: row.tenant_id,
    name: row.name,
    displayName: row.display_name,
    status: row.status,
    suspendedReason: row.suspended_reason,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

export function renderProject(row: ProjectRow): z.infer<typeof ProjectSchema> {
  return {
    id: row.project_id,
    tenantId: row.tenant_id,
    name: row.name,
    description: row.description,
    status: row.status,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

export function renderEnvironment(row: EnvironmentRow): z.infer<typeof EnvironmentSchema> {
  return {
    id: row.environment_id,
    tenantId: row.tenant_id,
    projectId: row.project_id,
    name: row.name,
    status: row.status,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

export function renderQuota(quota: QuotaView): z.infer<typeof QuotaSchema> {
  return {
    scope: quota.projectId === null ? "tenant" : "project",
    tenantId: quota.tenantId,
    projectId: quota.projectId,
    limits: fullLimits(quota.limits),
    updatedAt: quota.updatedAt ? iso(quota.updatedAt) : null,
  };
}

function fullLimits(limits: QuotaLimits): z.infer<typeof QuotaLimitsSchema> {
  const out = {} as Record<(typeof QUOTA_RESOURCES)[number], number | null>;
  for (const resource of QUOTA_RESOURCES) out[resource] = limits[resource] ?? null;
  return out;
}
