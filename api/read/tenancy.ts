import { Kysely, PostgresDialect } from "kysely";
import type pg from "pg";
import {
  liveSchema,
  tenancyProjection,
} from "../../projections/index.ts";
import {
  QUOTA_COLUMNS,
  quotaLimitsOf,
  type EnvironmentRow,
  type LifecycleStatus,
  type ProjectRow,
  type QuotaRow,
  type TenancyTables,
  type TenantRow,
  type TenantStatus,
} from "../../projections/sentral/tenancy.ts";
import type { QuotaLimits } from "../../domain/sentral/limits.ts";

/**
 * The API's only way into the tenancy read model (schema `tenancy`). Every
 * list takes the caller's visibility ("all" or ids) and filters in SQL, so
 * rows of other tenants (or sibling projects) are never read. Projects,
 * environments and quotas come back with their tenant's `stream_version`,
 * the version an ETag names.
 */
export type Visible = "all" | readonly string[];

export interface ListOptions {
  /** Exclusive keyset cursor: the last id of the previous page. */
  readonly after?: string;
  /** Rows to fetch (callers ask for page size + 1 to know whether there is more). */
  readonly limit: number;
  readonly name?: string;
}

export type ProjectWithVersion = ProjectRow & { stream_version: number };
export type EnvironmentWithVersion = EnvironmentRow & { stream_version: number };

export interface QuotaView {
  readonly tenantId: string;
  readonly projectId: string | null;
  readonly limits: QuotaLimits;
  readonly updatedAt: Date | null;
  readonly streamVersion: number;
}

export class TenancyReadModel {
  private readonly db: Kysely<TenancyTables>;

  constructor(pool: pg.Pool) {
    this.db = new Kysely<TenancyTables>({ dialect: new PostgresDialect({ pool }) }).withSchema(liveSchema(tenancyProjection));
  }

  getTenant(tenantId: string): Promise<TenantRow | undefined> {
    return this.db.selectFrom("tenants").selectAll().where("tenant_id", "=", tenantId).executeTakeFirst();
  }

  listTenants(visible: Visible, options: ListOptions & { status?: TenantStatus }): Promise<TenantRow[]> {
    if (visible !== "all" && visible.length === 0) return Promise.resolve([]);
    let query = this.db.selectFrom("tenants").selectAll();
    if (visible !== "all") query = query.where("tenant_id", "in", [...visible]);
    if (options.after !== undefined) query = query.where("tenant_id", ">", options.after);
    if (options.name !== undefined) query = query.where("name", "=", options.name);
    if (options.status !== undefined) query = query.where("status", "=", options.status);
    return query.orderBy("tenant_id").limit(options.limit).execute();
  }

  getProject(tenantId: string, projectId: string): Promise<ProjectWithVersion | undefined> {
    return this.db
      .selectFrom("projects as p")
      .innerJoin("tenants as t", "t.tenant_id", "p.tenant_id")
      .selectAll("p")
      .select("t.stream_version")
      .where("p.tenant_id", "=", tenantId)
      .where("p.project_id", "=", projectId)
      .executeTakeFirst();
  }

  listProjects(tenantId: string, visible: Visible, options: ListOptions & { status?: LifecycleStatus }): Promise<ProjectRow[]> {
    if (visible !== "all" && visible.length === 0) return Promise.resolve([]);
    let query = this.db.selectFrom("projects").selectAll().where("tenant_id", "=", tenantId);
    if (visible !== "all") query = query.where("project_id", "in", [...visible]);
    if (options.after !== undefined) query = query.where("project_id", ">", options.after);
    if (options.name !== undefined) query = query.where("name", "=", options.name);
    if (options.status !== undefined) query = query.where("status", "=", options.status);
    return query.orderBy("project_id").limit(options.limit).execute();
  }

  getEnvironment(tenantId: string, projectId: string, environmentId: string): Promise<EnvironmentWithVersion | undefined> {
    return this.db
      .selectFrom("environments as e")
      .innerJoin("tenants as t", "t.tenant_id", "e.tenant_id")
      .selectAll("e")
      .select("t.stream_version")
      .where("e.tenant_id", "=", tenantId)
      .where("e.project_id", "=", projectId)
      .where("e.environment_id", "=", environmentId)
      .executeTakeFirst();
  }

  listEnvironments(tenantId: string, projectId: string, options: ListOptions & { status?: LifecycleStatus }): Promise<EnvironmentRow[]> {
    let query = this.db
      .selectFrom("environments")
      .selectAll()
      .where("tenant_id", "=", tenantId)
      .where("project_id", "=", projectId);
    if (options.after !== undefined) query = query.where("environment_id", ">", options.after);
    if (options.name !== undefined) query = query.where("name", "=", options.name);
    if (options.status !== undefined) query = query.where("status", "=", options.status);
    return query.orderBy("environment_id").limit(options.limit).execute();
  }

  /** The tenant's quota (no row yet = no limits); undefined when the tenant does not exist. One statement, one snapshot. */
  async getTenantQuota(tenantId: string): Promise<QuotaView | undefined> {
    const row = await this.db
      .selectFrom("tenants as t")
      .leftJoin("quotas as q", (join) =>
        join.onRef("q.tenant_id", "=", "t.tenant_id").on("q.scope_kind", "=", "tenant").onRef("q.scope_id", "=", "t.tenant_id"),
      )
      .select(["t.stream_version", "q.updated_at", ...LIMIT_COLUMNS.map((c) => `q.${c}` as const)])
      .where("t.tenant_id", "=", tenantId)
      .executeTakeFirst();
    return row ? view(tenantId, null, row) : undefined;
  }

  /** The project's quota; undefined when the project does not exist. One statement, one snapshot. */
  async getProjectQuota(tenantId: string, projectId: string): Promise<QuotaView | undefined> {
    const row = await this.db
      .selectFrom("projects as p")
      .innerJoin("tenants as t", "t.tenant_id", "p.tenant_id")
      .leftJoin("quotas as q", (join) =>
        join.onRef("q.tenant_id", "=", "p.tenant_id").on("q.scope_kind", "=", "project").onRef("q.scope_id", "=", "p.project_id"),
      )
      .select(["t.stream_version", "q.updated_at", ...LIMIT_COLUMNS.map((c) => `q.${c}` as const)])
      .where("p.tenant_id", "=", tenantId)
      .where("p.project_id", "=", projectId)
      .executeTakeFirst();
    return row ? view(tenantId, projectId, row) : undefined;
  }
}

const LIMIT_COLUMNS = Object.values(QUOTA_COLUMNS);
type LimitColumns = Pick<QuotaRow, (typeof LIMIT_COLUMNS)[number]>;

function view(
  tenantId: string,
  projectId: string | null,
  row: { stream_version: number; updated_at: Date | null } & { [K in keyof LimitColumns]: LimitColumns[K] | null },
): QuotaView {
  return {
    tenantId,
    projectId,
    limits: quotaLimitsOf(row),
    updatedAt: row.updated_at,
    streamVersion: row.stream_version,
  };
}
