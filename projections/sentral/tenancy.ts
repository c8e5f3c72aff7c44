import { sql, type ColumnType, type Kysely, type Selectable } from "kysely";
import type { RecordedEvent } from "../../adapters/eventstore/port.ts";
import {
  TENANCY_EVENT_TYPES,
  isTenancyEventType,
  tenancyEventSchemas,
  type TenancyEvent,
} from "../../domain/sentral/events.ts";
import { QUOTA_RESOURCES, type QuotaLimits, type QuotaLimitsPatch, type QuotaResource } from "../../domain/sentral/limits.ts";
import { defineProjection } from "../projection.ts";

/**
 * Sentral tenancy read model: what the REST and GraphQL APIs serve about
 * tenants, projects, environments and quotas. Schema `tenancy`.
 *
 * Every tenancy event lives in its tenant's stream, so each row carries
 * `version`: the tenant stream position of the last event that changed that
 * row. `tenants.stream_version` is the position of the last event of the whole
 * tenant stream (any row); it is the expected version a command on this
 * tenant (an `If-Match`) must name, since projects, environments and quotas
 * live in the same stream.
 *
 * No uniqueness beyond the ids: names are unique where the domain says so
 * (decided by the tenant aggregate), and an archived project's name may be
 * reused, so a unique index here could only turn a legal history into a stuck
 * projection. Lookups by name are indexed.
 */

type Timestamp = ColumnType<Date, Date, Date>;
/** int8: node-postgres returns it as a string; use `quotaLimitsOf(row)` for numbers. */
type Limit = ColumnType<string | null, number | null, number | null>;

export type TenantStatus = "active" | "suspended";
export type LifecycleStatus = "active" | "archived";
export type QuotaScopeKind = "tenant" | "project";

export interface TenantsTable {
  tenant_id: string;
  name: string;
  display_name: string | null;
  status: TenantStatus;
  suspended_reason: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
  stream_version: number;
}

export interface ProjectsTable {
  tenant_id: string;
  project_id: string;
  name: string;
  description: string | null;
  status: LifecycleStatus;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
}

export interface EnvironmentsTable {
  tenant_id: string;
  project_id: string;
  environment_id: string;
  name: string;
  status: LifecycleStatus;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
}

/** One row per scope that ever had a limit set; a null column means no limit on that resource. */
export interface QuotasTable {
  tenant_id: string;
  scope_kind: QuotaScopeKind;
  /** The tenant id or the project id. */
  scope_id: string;
  /** Set for project scope, null for tenant scope. */
  project_id: string | null;
  vcpus: Limit;
  memory_mib: Limit;
  vms: Limit;
  hosts: Limit;
  networks: Limit;
  buckets: Limit;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
}

export interface TenancyTables {
  tenants: TenantsTable;
  projects: ProjectsTable;
  environments: EnvironmentsTable;
  quotas: QuotasTable;
}

export type TenantRow = Selectable<TenantsTable>;
export type ProjectRow = Selectable<ProjectsTable>;
export type EnvironmentRow = Selectable<EnvironmentsTable>;
export type QuotaRow = Selectable<QuotasTable>;

/** Quota resource -> column. */
export const QUOTA_COLUMNS = {
  vcpus: "vcpus",
  memoryMiB: "memory_mib",
  vms: "vms",
  hosts: "hosts",
  networks: "networks",
  buckets: "buckets",
} as const satisfies Record<QuotaResource, keyof QuotasTable>;

/** A quota row as the domain's effective limits (absent = unlimited). */
export function quotaLimitsOf(row: Pick<QuotaRow, (typeof QUOTA_COLUMNS)[QuotaResource]>): QuotaLimits {
  const limits: Partial<Record<QuotaResource, number>> = {};
  for (const resource of QUOTA_RESOURCES) {
    const value = row[QUOTA_COLUMNS[resource]];
    if (value !== null) limits[resource] = Number(value);
  }
  return limits;
}

export const TENANCY_SCHEMA = "tenancy";

export const tenancyProjection = defineProjection<TenancyTables>({
  name: TENANCY_SCHEMA,
  version: 1,
  tables: ["tenants", "projects", "environments", "quotas"],
  eventTypes: TENANCY_EVENT_TYPES,

  async createTables(db: Kysely<any>, schema: string) {
    const s = db.schema.withSchema(schema);
    await s
      .createTable("tenants")
      .addColumn("tenant_id", "text", (c) => c.primaryKey())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("display_name", "text")
      .addColumn("status", "text", (c) => c.notNull().check(sql`status in ('active', 'suspended')`))
      .addColumn("suspended_reason", "text")
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addColumn("stream_version", "integer", (c) => c.notNull())
      .execute();
    await s.createIndex("tenants_name").on("tenants").column("name").execute();

    await s
      .createTable("projects")
      .addColumn("tenant_id", "text", (c) => c.notNull())
      .addColumn("project_id", "text", (c) => c.notNull())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("description", "text")
      .addColumn("status", "text", (c) => c.notNull().check(sql`status in ('active', 'archived')`))
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addPrimaryKeyConstraint("projects_pkey", ["tenant_id", "project_id"])
      .execute();
    await s.createIndex("projects_tenant_name").on("projects").columns(["tenant_id", "name"]).execute();

    await s
      .createTable("environments")
      .addColumn("tenant_id", "text", (c) => c.notNull())
      .addColumn("project_id", "text", (c) => c.notNull())
      .addColumn("environment_id", "text", (c) => c.notNull())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull().check(sql`status in ('active', 'archived')`))
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addPrimaryKeyConstraint("environments_pkey", ["tenant_id", "project_id", "environment_id"])
      .execute();
    await s.createIndex("environments_project_name").on("environments").columns(["tenant_id", "project_id", "name"]).execute();

    // Keyed by tenant too: ids are opaque, unique within their parent, and every read is tenant-scoped anyway.
    let quotas = s
      .createTable("quotas")
      .addColumn("tenant_id", "text", (c) => c.notNull())
      .addColumn("scope_kind", "text", (c) => c.notNull().check(sql`scope_kind in ('tenant', 'project')`))
      .addColumn("scope_id", "text", (c) => c.notNull())
      .addColumn("project_id", "text");
    for (const column of Object.values(QUOTA_COLUMNS)) {
      quotas = quotas.addColumn(column, "bigint", (c) => c.check(sql`${sql.ref(column)} >= 0`));
    }
    await quotas
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addPrimaryKeyConstraint("quotas_pkey", ["tenant_id", "scope_kind", "scope_id"])
      .addCheckConstraint("quotas_scope", sql`(scope_kind = 'tenant') = (project_id is null)`)
      .execute();
  },

  async handle(db, recorded) {
    const event = parseTenancyEvent(recorded);
    if (!event) return;
    const at = recorded.occurredAt;
    const version = recorded.streamPosition;
    const { tenantId } = event.data;

    switch (event.type) {
      case "TenantCreated":
        await db
          .insertInto("tenants")
          .values({
            tenant_id: tenantId,
            name: event.data.name,
            display_name: event.data.displayName,
            status: "active",
            suspended_reason: null,
            created_at: at,
            updated_at: at,
            version,
            stream_version: version,
          })
          .execute();
        return;
      case "TenantRenamed":
        await updateTenant(db, recorded, { name: event.data.name, display_name: event.data.displayName });
        return;
      case "TenantSuspended":
        await updateTenant(db, recorded, { status: "suspended", suspended_reason: event.data.reason });
        return;
      case "TenantResumed":
        await updateTenant(db, recorded, { status: "active", suspended_reason: null });
        return;
      case "ProjectCreated":
        await db
          .insertInto("projects")
          .values({
            tenant_id: tenantId,
            project_id: event.data.projectId,
            name: event.data.name,
            description: event.data.description,
            status: "active",
            created_at: at,
            updated_at: at,
            version,
          })
          .execute();
        break;
      case "ProjectArchived":
        await expectOne(
          db
            .updateTable("projects")
            .set({ status: "archived", updated_at: at, version })
            .where("tenant_id", "=", tenantId)
            .where("project_id", "=", event.data.projectId)
            .executeTakeFirst(),
          recorded,
        );
        break;
      case "EnvironmentCreated":
        await db
          .insertInto("environments")
          .values({
            tenant_id: tenantId,
            project_id: event.data.projectId,
            environment_id: event.data.environmentId,
            name: event.data.name,
            status: "active",
            created_at: at,
            updated_at: at,
            version,
          })
          .execute();
        break;
      case "EnvironmentArchived":
        await expectOne(
          db
            .updateTable("environments")
            .set({ status: "archived", updated_at: at, version })
            .where("tenant_id", "=", tenantId)
            .where("project_id", "=", event.data.projectId)
            .where("environment_id", "=", event.data.environmentId)
            .executeTakeFirst(),
          recorded,
        );
        break;
      case "TenantQuotaSet":
        await setQuota(db, recorded, { tenantId, kind: "tenant", scopeId: tenantId, projectId: null }, event.data.limits);
        break;
      case "ProjectQuotaSet":
        await setQuota(
          db,
          recorded,
          { tenantId, kind: "project", scopeId: event.data.projectId, projectId: event.data.projectId },
          event.data.limits,
        );
        break;
    }
    // Events about a tenant's projects, environments and quotas still advance its stream.
    await expectOne(
      db.updateTable("tenants").set({ stream_version: version }).where("tenant_id", "=", tenantId).executeTakeFirst(),
      recorded,
    );
  },
});

/**
 * Validates the data against the published schema for its type and version.
 * A version the code does not know means an upcaster is missing: fail (and
 * stop the projection) rather than serve a guess.
 */
export function parseTenancyEvent(recorded: RecordedEvent): TenancyEvent | undefined {
  if (!isTenancyEventType(recorded.type)) return undefined;
  const entry = tenancyEventSchemas[recorded.type];
  if (recorded.schemaVersion !== entry.schemaVersion) {
    throw new Error(
      `${recorded.type} ${recorded.id}: schema version ${recorded.schemaVersion}, the tenancy projection reads ${entry.schemaVersion} (upcaster missing?)`,
    );
  }
  return { type: recorded.type, data: entry.schema.parse(recorded.data) } as TenancyEvent;
}

async function updateTenant(
  db: Kysely<TenancyTables>,
  recorded: RecordedEvent,
  changes: Partial<Pick<TenantsTable, "name" | "display_name" | "status" | "suspended_reason">>,
): Promise<void> {
  const tenantId = (recorded.data as { tenantId: string }).tenantId;
  await expectOne(
    db
      .updateTable("tenants")
      .set({ ...changes, updated_at: recorded.occurredAt, version: recorded.streamPosition, stream_version: recorded.streamPosition })
      .where("tenant_id", "=", tenantId)
      .executeTakeFirst(),
    recorded,
  );
}

async function setQuota(
  db: Kysely<TenancyTables>,
  recorded: RecordedEvent,
  scope: { tenantId: string; kind: QuotaScopeKind; scopeId: string; projectId: string | null },
  patch: QuotaLimitsPatch,
): Promise<void> {
  // Named resources change (a number sets, null clears); the others keep their value.
  const changed: Partial<Record<(typeof QUOTA_COLUMNS)[QuotaResource], number | null>> = {};
  for (const resource of QUOTA_RESOURCES) {
    const value = patch[resource];
    if (value !== undefined) changed[QUOTA_COLUMNS[resource]] = value;
  }
  const at = recorded.occurredAt;
  const version = recorded.streamPosition;
  await db
    .insertInto("quotas")
    .values({
      tenant_id: scope.tenantId,
      scope_kind: scope.kind,
      scope_id: scope.scopeId,
      project_id: scope.projectId,
      ...changed,
      created_at: at,
      updated_at: at,
      version,
    })
    .onConflict((oc) =>
      oc.columns(["tenant_id", "scope_kind", "scope_id"]).doUpdateSet({ ...changed, updated_at: at, version }),
    )
    .execute();
}

/** An update that finds no row means the model and the log disagree: fail loudly instead of drifting. */
async function expectOne(result: Promise<{ numUpdatedRows: bigint }>, recorded: RecordedEvent): Promise<void> {
  const { numUpdatedRows } = await result;
  if (numUpdatedRows !== 1n) {
    throw new Error(`${recorded.type} ${recorded.id} (stream ${recorded.streamId}@${recorded.streamPosition}) matched ${numUpdatedRows} rows, expected 1`);
  }
}
