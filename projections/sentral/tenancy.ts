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

  handleBatch(db, events, { schema }) {
    return applyTenancyBatch(db, events, schema);
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

// --- The batch path ---------------------------------------------------------------------------
//
// `handle` above is the reference: one event, a few statements. The batch
// path must leave exactly the rows that `handle` applied to each event in turn
// would leave, and fail whenever that would fail (test/integration/projections
// /tenancy-batch.test.ts checks both on random histories). It reads nothing:
//
// - rows created in the batch are built in memory, later events of the batch
//   change them there, and one multi-row INSERT per table writes them (a key
//   that exists already fails it, as the per-event insert would);
// - changes to rows from earlier batches are merged per key into a patch
//   (the last value of each column wins) and written by one UPDATE ... FROM
//   json_to_recordset(...) RETURNING the key per table; a patched key that no row has is
//   the per-event "matched 0 rows" failure, reported for its first event;
// - quotas are upserts per event: one statement updates the rows that exist
//   with the merged patch and inserts the others.
//
// An event that creates a key the batch already changed or created fails,
// because per event it always would (a duplicate insert, or the earlier
// update found no row). So at most seven statements per batch, each with its
// rows as one JSON parameter.

/** timestamptz as text (see timestampText): how the batch path carries times in its JSON. */
type TimestampText = string;

/** A tenant row as written by TenantCreated and changed in memory by the rest of the batch. */
interface TenantValues {
  tenant_id: string;
  name: string;
  display_name: string | null;
  status: TenantStatus;
  suspended_reason: string | null;
  created_at: TimestampText;
  updated_at: TimestampText;
  version: number;
  stream_version: number;
}

interface ProjectValues {
  tenant_id: string;
  project_id: string;
  name: string;
  description: string | null;
  status: LifecycleStatus;
  created_at: TimestampText;
  updated_at: TimestampText;
  version: number;
}

interface EnvironmentValues {
  tenant_id: string;
  project_id: string;
  environment_id: string;
  name: string;
  status: LifecycleStatus;
  created_at: TimestampText;
  updated_at: TimestampText;
  version: number;
}

/** Changes to a row that existed before the batch; `first` is the first event that needed the row. */
interface Patch {
  readonly first: RecordedEvent;
  readonly order: number;
}

interface TenantPatch extends Patch {
  readonly tenant_id: string;
  named?: { name: string; display_name: string | null };
  status?: { status: TenantStatus; suspended_reason: string | null };
  updated?: { at: TimestampText; version: number };
  stream_version: number;
}

interface ArchivePatch extends Patch {
  readonly keys: readonly string[];
  at: TimestampText;
  version: number;
}

type QuotaColumn = (typeof QUOTA_COLUMNS)[QuotaResource];
const QUOTA_COLUMN_LIST = QUOTA_RESOURCES.map((resource) => QUOTA_COLUMNS[resource]);

/** Every quota set of one scope in the batch: the merged patch, and what an insert would write. */
interface QuotaChange {
  readonly tenant_id: string;
  readonly scope_kind: QuotaScopeKind;
  readonly scope_id: string;
  readonly project_id: string | null;
  readonly set: Map<QuotaColumn, number | null>;
  /** Of the first set in the batch: the row's created_at if it did not exist. */
  readonly created_at: TimestampText;
  updated_at: TimestampText;
  version: number;
}

const keyOf = (...parts: string[]) => JSON.stringify(parts);

async function applyTenancyBatch(db: Kysely<TenancyTables>, events: readonly RecordedEvent[], schema: string): Promise<void> {
  const batch = new TenancyBatch();
  for (let order = 0; order < events.length; order++) {
    const recorded = events[order]!;
    const event = parseTenancyEvent(recorded);
    if (event) batch.apply(recorded, wellFormed(event), order);
  }
  await batch.flush(db, schema);
}

type StringMethods = { isWellFormed(this: string): boolean; toWellFormed(this: string): string };
const { isWellFormed, toWellFormed } = String.prototype as unknown as StringMethods;

/**
 * The per-event path sends strings as UTF-8 parameters, which turns a lone
 * UTF-16 surrogate into U+FFFD; JSON would carry it as an escape Postgres
 * refuses. So the batch path replaces them first, keys included: two ids that
 * differ only there are one row in Postgres and must be one key here.
 */
function wellFormed(event: TenancyEvent): TenancyEvent {
  let data: Record<string, unknown> | undefined;
  for (const [name, value] of Object.entries(event.data)) {
    if (typeof value === "string" && !isWellFormed.call(value)) {
      data ??= { ...event.data };
      data[name] = toWellFormed.call(value);
    }
  }
  return data ? ({ type: event.type, data } as TenancyEvent) : event;
}

class TenancyBatch {
  private readonly tenants = new Map<string, TenantValues>();
  private readonly tenantPatches = new Map<string, TenantPatch>();
  private readonly projects = new Map<string, ProjectValues>();
  private readonly projectPatches = new Map<string, ArchivePatch>();
  private readonly environments = new Map<string, EnvironmentValues>();
  private readonly environmentPatches = new Map<string, ArchivePatch>();
  private readonly quotas = new Map<string, QuotaChange>();

  apply(recorded: RecordedEvent, event: TenancyEvent, order: number): void {
    const at = timestampText(recorded.occurredAt);
    const version = recorded.streamPosition;
    const { tenantId } = event.data;

    switch (event.type) {
      case "TenantCreated":
        if (this.tenants.has(tenantId) || this.tenantPatches.has(tenantId)) throw duplicate(recorded, "tenants");
        this.tenants.set(tenantId, {
          tenant_id: tenantId,
          name: event.data.name,
          display_name: storable(event.data.displayName),
          status: "active",
          suspended_reason: null,
          created_at: at,
          updated_at: at,
          version,
          stream_version: version,
        });
        return;
      case "TenantRenamed":
        this.updateTenant(recorded, at, order, tenantId, { named: { name: event.data.name, display_name: storable(event.data.displayName) } });
        return;
      case "TenantSuspended":
        this.updateTenant(recorded, at, order, tenantId, { status: { status: "suspended", suspended_reason: storable(event.data.reason) } });
        return;
      case "TenantResumed":
        this.updateTenant(recorded, at, order, tenantId, { status: { status: "active", suspended_reason: null } });
        return;
      case "ProjectCreated": {
        const key = keyOf(tenantId, event.data.projectId);
        if (this.projects.has(key) || this.projectPatches.has(key)) throw duplicate(recorded, "projects");
        this.projects.set(key, {
          tenant_id: tenantId,
          project_id: event.data.projectId,
          name: event.data.name,
          description: event.data.description,
          status: "active",
          created_at: at,
          updated_at: at,
          version,
        });
        break;
      }
      case "ProjectArchived":
        archive(this.projects, this.projectPatches, [tenantId, event.data.projectId], recorded, at, order);
        break;
      case "EnvironmentCreated": {
        const key = keyOf(tenantId, event.data.projectId, event.data.environmentId);
        if (this.environments.has(key) || this.environmentPatches.has(key)) throw duplicate(recorded, "environments");
        this.environments.set(key, {
          tenant_id: tenantId,
          project_id: event.data.projectId,
          environment_id: event.data.environmentId,
          name: event.data.name,
          status: "active",
          created_at: at,
          updated_at: at,
          version,
        });
        break;
      }
      case "EnvironmentArchived":
        archive(this.environments, this.environmentPatches, [tenantId, event.data.projectId, event.data.environmentId], recorded, at, order);
        break;
      case "TenantQuotaSet":
        this.setQuota(recorded, at, tenantId, "tenant", tenantId, null, event.data.limits);
        break;
      case "ProjectQuotaSet":
        this.setQuota(recorded, at, tenantId, "project", event.data.projectId, event.data.projectId, event.data.limits);
        break;
    }
    // Events about a tenant's projects, environments and quotas still advance its stream.
    const tenant = this.tenants.get(tenantId);
    if (tenant) tenant.stream_version = version;
    else this.tenantPatch(recorded, order, tenantId).stream_version = version;
  }

  private updateTenant(
    recorded: RecordedEvent,
    at: TimestampText,
    order: number,
    tenantId: string,
    change: Pick<TenantPatch, "named" | "status">,
  ): void {
    const version = recorded.streamPosition;
    const tenant = this.tenants.get(tenantId);
    if (tenant) {
      if (change.named) Object.assign(tenant, change.named);
      if (change.status) Object.assign(tenant, change.status);
      tenant.updated_at = at;
      tenant.version = version;
      tenant.stream_version = version;
      return;
    }
    const patch = this.tenantPatch(recorded, order, tenantId);
    if (change.named) patch.named = change.named;
    if (change.status) patch.status = change.status;
    patch.updated = { at, version };
    patch.stream_version = version;
  }

  private tenantPatch(recorded: RecordedEvent, order: number, tenantId: string): TenantPatch {
    let patch = this.tenantPatches.get(tenantId);
    if (!patch) {
      patch = { first: recorded, order, tenant_id: tenantId, stream_version: recorded.streamPosition };
      this.tenantPatches.set(tenantId, patch);
    }
    return patch;
  }

  private setQuota(
    recorded: RecordedEvent,
    at: TimestampText,
    tenantId: string,
    kind: QuotaScopeKind,
    scopeId: string,
    projectId: string | null,
    limits: QuotaLimitsPatch,
  ): void {
    const key = keyOf(tenantId, kind, scopeId);
    let change = this.quotas.get(key);
    if (!change) {
      change = {
        tenant_id: tenantId,
        scope_kind: kind,
        scope_id: scopeId,
        project_id: projectId,
        set: new Map(),
        created_at: at,
        updated_at: at,
        version: recorded.streamPosition,
      };
      this.quotas.set(key, change);
    }
    // Named resources change (a number sets, null clears); the others keep their value.
    for (const resource of QUOTA_RESOURCES) {
      const value = limits[resource];
      if (value !== undefined) change.set.set(QUOTA_COLUMNS[resource], value);
    }
    change.updated_at = at;
    change.version = recorded.streamPosition;
  }

  /**
   * Each statement gets its rows as one JSON parameter, expanded by
   * json_to_recordset: JSON.stringify is native and much cheaper than
   * node-postgres building one array literal per column (profiled: the
   * arrays cost more than the fold), and the SQL names every column's type.
   */
  async flush(db: Kysely<TenancyTables>, schema: string): Promise<void> {
    const table = (name: keyof TenancyTables) => sql.table(`${schema}.${name}`);
    const json = (rows: readonly object[]) => sql`${JSON.stringify(rows)}::json`;

    if (this.tenants.size) {
      await sql`insert into ${table("tenants")}
          (tenant_id, name, display_name, status, suspended_reason, created_at, updated_at, version, stream_version)
        select tenant_id, name, display_name, status, suspended_reason, created_at, updated_at, version, stream_version
          from json_to_recordset(${json([...this.tenants.values()])})
            as v(tenant_id text, name text, display_name text, status text, suspended_reason text,
                 created_at timestamptz, updated_at timestamptz, version int4, stream_version int4)`.execute(db);
    }
    if (this.tenantPatches.size) {
      const patches = [...this.tenantPatches.values()].map((p) => ({
        tenant_id: p.tenant_id,
        named: p.named !== undefined,
        name: p.named?.name ?? null,
        display_name: p.named?.display_name ?? null,
        status_set: p.status !== undefined,
        status: p.status?.status ?? null,
        suspended_reason: p.status?.suspended_reason ?? null,
        updated_at: p.updated?.at ?? null,
        version: p.updated?.version ?? null,
        stream_version: p.stream_version,
      }));
      const { rows } = await sql<{ tenant_id: string }>`update ${table("tenants")} as t
           set name = case when v.named then v.name else t.name end,
               display_name = case when v.named then v.display_name else t.display_name end,
               status = case when v.status_set then v.status else t.status end,
               suspended_reason = case when v.status_set then v.suspended_reason else t.suspended_reason end,
               updated_at = coalesce(v.updated_at, t.updated_at),
               version = coalesce(v.version, t.version),
               stream_version = v.stream_version
          from json_to_recordset(${json(patches)})
            as v(tenant_id text, named bool, name text, display_name text, status_set bool, status text,
                 suspended_reason text, updated_at timestamptz, version int4, stream_version int4)
         where t.tenant_id = v.tenant_id
        returning t.tenant_id`.execute(db);
      expectAll(this.tenantPatches, rows.map((row) => row.tenant_id));
    }

    if (this.projects.size) {
      await sql`insert into ${table("projects")}
          (tenant_id, project_id, name, description, status, created_at, updated_at, version)
        select tenant_id, project_id, name, description, status, created_at, updated_at, version
          from json_to_recordset(${json([...this.projects.values()])})
            as v(tenant_id text, project_id text, name text, description text, status text,
                 created_at timestamptz, updated_at timestamptz, version int4)`.execute(db);
    }
    if (this.projectPatches.size) {
      const patches = [...this.projectPatches.values()].map((p) => ({
        tenant_id: p.keys[0],
        project_id: p.keys[1],
        updated_at: p.at,
        version: p.version,
      }));
      const { rows } = await sql<{ tenant_id: string; project_id: string }>`update ${table("projects")} as p
           set status = 'archived', updated_at = v.updated_at, version = v.version
          from json_to_recordset(${json(patches)}) as v(tenant_id text, project_id text, updated_at timestamptz, version int4)
         where p.tenant_id = v.tenant_id and p.project_id = v.project_id
        returning p.tenant_id, p.project_id`.execute(db);
      expectAll(this.projectPatches, rows.map((row) => keyOf(row.tenant_id, row.project_id)));
    }

    if (this.environments.size) {
      await sql`insert into ${table("environments")}
          (tenant_id, project_id, environment_id, name, status, created_at, updated_at, version)
        select tenant_id, project_id, environment_id, name, status, created_at, updated_at, version
          from json_to_recordset(${json([...this.environments.values()])})
            as v(tenant_id text, project_id text, environment_id text, name text, status text,
                 created_at timestamptz, updated_at timestamptz, version int4)`.execute(db);
    }
    if (this.environmentPatches.size) {
      const patches = [...this.environmentPatches.values()].map((p) => ({
        tenant_id: p.keys[0],
        project_id: p.keys[1],
        environment_id: p.keys[2],
        updated_at: p.at,
        version: p.version,
      }));
      const { rows } = await sql<{ tenant_id: string; project_id: string; environment_id: string }>`update ${table("environments")} as e
           set status = 'archived', updated_at = v.updated_at, version = v.version
          from json_to_recordset(${json(patches)})
            as v(tenant_id text, project_id text, environment_id text, updated_at timestamptz, version int4)
         where e.tenant_id = v.tenant_id and e.project_id = v.project_id and e.environment_id = v.environment_id
        returning e.tenant_id, e.project_id, e.environment_id`.execute(db);
      expectAll(this.environmentPatches, rows.map((row) => keyOf(row.tenant_id, row.project_id, row.environment_id)));
    }

    if (this.quotas.size) {
      // Existing rows get the merged patch; the others are inserted as the first set would have (unnamed limits null).
      const changes = [...this.quotas.values()].map((q) => {
        const row: Record<string, unknown> = {
          tenant_id: q.tenant_id,
          scope_kind: q.scope_kind,
          scope_id: q.scope_id,
          project_id: q.project_id,
          created_at: q.created_at,
          updated_at: q.updated_at,
          version: q.version,
        };
        for (const name of QUOTA_COLUMN_LIST) {
          row[name] = q.set.get(name) ?? null;
          row[`${name}_named`] = q.set.has(name);
        }
        return row;
      });
      const limits = sql.join(QUOTA_COLUMN_LIST.map((name) => sql.ref(name)));
      await sql`with v as (
          select * from json_to_recordset(${json(changes)})
            as v(tenant_id text, scope_kind text, scope_id text, project_id text,
                 ${sql.join(QUOTA_COLUMN_LIST.map((name) => sql`${sql.ref(name)} int8, ${sql.ref(`${name}_named`)} bool`))},
                 created_at timestamptz, updated_at timestamptz, version int4)
        ), updated as (
          update ${table("quotas")} as q
             set ${sql.join(QUOTA_COLUMN_LIST.map((name) => sql`${sql.ref(name)} = case when ${sql.ref(`v.${name}_named`)} then ${sql.ref(`v.${name}`)} else ${sql.ref(`q.${name}`)} end`))},
                 updated_at = v.updated_at, version = v.version
            from v
           where q.tenant_id = v.tenant_id and q.scope_kind = v.scope_kind and q.scope_id = v.scope_id
          returning q.tenant_id, q.scope_kind, q.scope_id
        )
        insert into ${table("quotas")} (tenant_id, scope_kind, scope_id, project_id, ${limits}, created_at, updated_at, version)
        select v.tenant_id, v.scope_kind, v.scope_id, v.project_id, ${limits}, v.created_at, v.updated_at, v.version
          from v
         where not exists (select 1 from updated u
                            where u.tenant_id = v.tenant_id and u.scope_kind = v.scope_kind and u.scope_id = v.scope_id)`.execute(db);
    }
  }
}

function archive<Row extends { status: LifecycleStatus; updated_at: TimestampText; version: number }>(
  created: Map<string, Row>,
  patches: Map<string, ArchivePatch>,
  keys: readonly string[],
  recorded: RecordedEvent,
  at: TimestampText,
  order: number,
): void {
  const key = keyOf(...keys);
  const row = created.get(key);
  if (row) {
    row.status = "archived";
    row.updated_at = at;
    row.version = recorded.streamPosition;
    return;
  }
  const patch = patches.get(key);
  if (patch) {
    patch.at = at;
    patch.version = recorded.streamPosition;
  } else {
    patches.set(key, { first: recorded, order, keys, at, version: recorded.streamPosition });
  }
}

/**
 * A timestamptz as Postgres reads the Date node-postgres would send: ISO 8601
 * for years 1 to 9999 (native and fast), else the form node-postgres uses,
 * which JSON's extended years ("+010000-...") and negative years are not.
 */
function timestampText(date: Date): TimestampText {
  const year = date.getUTCFullYear();
  if (year >= 1 && year <= 9999) return date.toISOString();
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const bc = year <= 0;
  return (
    `${pad(bc ? 1 - year : year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}` +
    `T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(date.getUTCMilliseconds(), 3)}` +
    `+00:00${bc ? " BC" : ""}`
  );
}

/** Every patched key must have matched a row: the first event (in log order) whose row was missing fails the batch. */
function expectAll(patches: Map<string, Patch>, matched: readonly string[]): void {
  if (matched.length === patches.size) return;
  const found = new Set(matched);
  let missing: Patch | undefined;
  for (const [key, patch] of patches) if (!found.has(key) && (!missing || patch.order < missing.order)) missing = patch;
  if (!missing) return;
  const { first } = missing;
  throw new Error(`${first.type} ${first.id} (stream ${first.streamId}@${first.streamPosition}) matched 0 rows, expected 1`);
}

/** The per-event path fails here on its insert; so does the batch, without waiting for the flush. */
function duplicate(recorded: RecordedEvent, table: keyof TenancyTables): Error {
  return new Error(
    `${recorded.type} ${recorded.id} (stream ${recorded.streamId}@${recorded.streamPosition}): duplicate key in ${table}`,
  );
}

/**
 * Postgres refuses NUL in text. The per-event path sends every value, so it
 * fails on such a value even when a later event of the batch overwrites it;
 * the batch path only sends final values, so it checks the ones that can be
 * overwritten (the others reach Postgres anyway).
 */
function storable<T extends string | null>(value: T): T {
  if (value !== null && value.includes("\u0000")) throw new Error('invalid byte sequence for encoding "UTF8": 0x00');
  return value;
}
