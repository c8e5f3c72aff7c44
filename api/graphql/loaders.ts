import { sql, type Expression, type ExpressionBuilder, type Kysely, type SqlBool } from "kysely";
import { liveSchema, tenancyProjection } from "../../projections/index.ts";
import type {
  EnvironmentRow,
  LifecycleStatus,
  ProjectRow,
  QuotaRow,
  TenancyTables,
  TenantRow,
} from "../../projections/sentral/tenancy.ts";

/**
 * Per-request batching and caching, so a page of tenants asking for their
 * quota (or a page of environments asking for their project) costs one query
 * per level instead of one per row. Keys resolved in the same tick are
 * loaded together; each key is loaded at most once per request. Mutations
 * clear the caches after a write (see commands.ts).
 */
export class BatchLoader<Key, Value> {
  private readonly cache = new Map<string, Promise<Value>>();
  private queue: Array<{ key: Key; resolve: (value: Value) => void; reject: (error: unknown) => void }> = [];

  constructor(
    private readonly batch: (keys: readonly Key[]) => Promise<readonly Value[]>,
    private readonly keyOf: (key: Key) => string = (key) => JSON.stringify(key),
  ) {}

  load(key: Key): Promise<Value> {
    const id = this.keyOf(key);
    const cached = this.cache.get(id);
    if (cached) return cached;
    const promise = new Promise<Value>((resolve, reject) => {
      this.queue.push({ key, resolve, reject });
      // After the current promise jobs (graphql-js resolving siblings), like DataLoader.
      if (this.queue.length === 1) void Promise.resolve().then(() => process.nextTick(() => void this.dispatch()));
    });
    this.cache.set(id, promise);
    return promise;
  }

  clear(): void {
    this.cache.clear();
  }

  private async dispatch(): Promise<void> {
    const queue = this.queue;
    this.queue = [];
    try {
      const values = await this.batch(queue.map((entry) => entry.key));
      if (values.length !== queue.length) throw new Error(`batch returned ${values.length} values for ${queue.length} keys`);
      queue.forEach((entry, index) => entry.resolve(values[index]!));
    } catch (error) {
      for (const entry of queue) entry.reject(error);
    }
  }
}

/** A nested page: what Tenant.projects / Project.environments ask for, with `first + 1` rows to learn hasNextPage. */
export interface ProjectPageKey {
  readonly tenantId: string;
  readonly limit: number;
  readonly after: string | undefined;
  readonly status: LifecycleStatus | undefined;
  /** visibleProjects(actor, tenantId) */
  readonly visible: "all" | readonly string[];
}

export interface EnvironmentPageKey {
  readonly tenantId: string;
  readonly projectId: string;
  readonly limit: number;
  readonly after: string | undefined;
  readonly status: LifecycleStatus | undefined;
}

export interface Loaders {
  readonly tenant: BatchLoader<string, TenantRow | null>;
  readonly project: BatchLoader<readonly [string, string], ProjectRow | null>;
  readonly environment: BatchLoader<readonly [string, string, string], EnvironmentRow | null>;
  readonly tenantQuota: BatchLoader<string, QuotaRow | null>;
  readonly projectQuota: BatchLoader<readonly [string, string], QuotaRow | null>;
  readonly projectPage: BatchLoader<ProjectPageKey, ProjectRow[]>;
  readonly environmentPage: BatchLoader<EnvironmentPageKey, EnvironmentRow[]>;
  clearAll(): void;
}

type Db = Kysely<TenancyTables>;

export function tenancyDb(db: Kysely<any>): Db {
  return (db as Db).withSchema(liveSchema(tenancyProjection));
}

export function createLoaders(db: Db): Loaders {
  const loaders = {
    tenant: new BatchLoader<string, TenantRow | null>(async (ids) => {
      const rows = await db.selectFrom("tenants").selectAll().where("tenant_id", "in", unique(ids)).execute();
      const byId = new Map(rows.map((row) => [row.tenant_id, row]));
      return ids.map((id) => byId.get(id) ?? null);
    }, (id) => id),

    project: new BatchLoader<readonly [string, string], ProjectRow | null>(async (keys) => {
      const rows = await db
        .selectFrom("projects")
        .selectAll()
        .where((eb) => eb(eb.refTuple("tenant_id", "project_id"), "in", keys.map(([t, p]) => eb.tuple(t, p))))
        .execute();
      const byKey = new Map(rows.map((row) => [key(row.tenant_id, row.project_id), row]));
      return keys.map(([t, p]) => byKey.get(key(t, p)) ?? null);
    }),

    environment: new BatchLoader<readonly [string, string, string], EnvironmentRow | null>(async (keys) => {
      const rows = await db
        .selectFrom("environments")
        .selectAll()
        .where((eb) =>
          eb(eb.refTuple("tenant_id", "project_id", "environment_id"), "in", keys.map(([t, p, e]) => eb.tuple(t, p, e))),
        )
        .execute();
      const byKey = new Map(rows.map((row) => [key(row.tenant_id, row.project_id, row.environment_id), row]));
      return keys.map(([t, p, e]) => byKey.get(key(t, p, e)) ?? null);
    }),

    tenantQuota: new BatchLoader<string, QuotaRow | null>(async (ids) => {
      const rows = await db
        .selectFrom("quotas")
        .selectAll()
        .where("scope_kind", "=", "tenant")
        .where("tenant_id", "in", unique(ids))
        .execute();
      const byId = new Map(rows.filter((row) => row.scope_id === row.tenant_id).map((row) => [row.tenant_id, row]));
      return ids.map((id) => byId.get(id) ?? null);
    }, (id) => id),

    projectQuota: new BatchLoader<readonly [string, string], QuotaRow | null>(async (keys) => {
      const rows = await db
        .selectFrom("quotas")
        .selectAll()
        .where("scope_kind", "=", "project")
        .where((eb) => eb(eb.refTuple("tenant_id", "scope_id"), "in", keys.map(([t, p]) => eb.tuple(t, p))))
        .execute();
      const byKey = new Map(rows.map((row) => [key(row.tenant_id, row.scope_id), row]));
      return keys.map(([t, p]) => byKey.get(key(t, p)) ?? null);
    }),

    projectPage: new BatchLoader<ProjectPageKey, ProjectRow[]>((keys) => pagesPerGroup(keys, (group) => loadProjectPages(db, group))),

    environmentPage: new BatchLoader<EnvironmentPageKey, EnvironmentRow[]>((keys) =>
      pagesPerGroup(keys, (group) => loadEnvironmentPages(db, group)),
    ),

    clearAll() {
      for (const loader of [loaders.tenant, loaders.project, loaders.environment, loaders.tenantQuota, loaders.projectQuota, loaders.projectPage, loaders.environmentPage]) {
        loader.clear();
      }
    },
  };
  return loaders;
}

/**
 * Keys sharing (limit, after, status) are one query; pages of different
 * shapes (rare: a document asking `first: 5` here and `first: 10` there) are
 * one query each.
 */
async function pagesPerGroup<Key extends { limit: number; after: string | undefined; status: LifecycleStatus | undefined }, Row>(
  keys: readonly Key[],
  load: (group: readonly Key[]) => Promise<Row[][]>,
): Promise<Row[][]> {
  const groups = new Map<string, number[]>();
  keys.forEach((k, index) => {
    const shape = JSON.stringify([k.limit, k.after ?? null, k.status ?? null]);
    const list = groups.get(shape);
    if (list) list.push(index);
    else groups.set(shape, [index]);
  });
  const out: Row[][] = new Array(keys.length);
  await Promise.all(
    [...groups.values()].map(async (indexes) => {
      const pages = await load(indexes.map((index) => keys[index]!));
      indexes.forEach((index, i) => (out[index] = pages[i]!));
    }),
  );
  return out;
}

/** One query for the first `limit` projects (after the cursor) of each tenant, visibility filtered in SQL. */
async function loadProjectPages(db: Db, keys: readonly ProjectPageKey[]): Promise<ProjectRow[][]> {
  const { limit, after, status } = keys[0]!;
  const visibleKeys = keys.filter((k) => k.visible === "all" || k.visible.length > 0);
  if (limit === 0 || visibleKeys.length === 0) return keys.map(() => []);
  const allTenants = unique(visibleKeys.filter((k) => k.visible === "all").map((k) => k.tenantId));
  const someProjects = visibleKeys.filter((k) => k.visible !== "all");
  const visible = (eb: ExpressionBuilder<TenancyTables, "projects">): Expression<SqlBool> =>
    eb.or([
      ...(allTenants.length > 0 ? [eb("tenant_id", "in", allTenants)] : []),
      ...someProjects.map((k) => eb.and([eb("tenant_id", "=", k.tenantId), eb("project_id", "in", [...(k.visible as readonly string[])])])),
    ]);
  let inner = db
    .selectFrom("projects")
    .selectAll()
    .select(sql<string>`row_number() over (partition by tenant_id order by project_id)`.as("rn"))
    .where(visible);
  if (after !== undefined) inner = inner.where("project_id", ">", after);
  if (status !== undefined) inner = inner.where("status", "=", status);
  const rows = await db.selectFrom(inner.as("page")).selectAll().where("rn", "<=", String(limit)).orderBy("tenant_id").orderBy("project_id").execute();
  const byTenant = groupBy(rows.map(({ rn: _rn, ...row }) => row as ProjectRow), (row) => row.tenant_id);
  return keys.map((k) => (k.visible === "all" || k.visible.length > 0 ? (byTenant.get(k.tenantId) ?? []) : []));
}

async function loadEnvironmentPages(db: Db, keys: readonly EnvironmentPageKey[]): Promise<EnvironmentRow[][]> {
  const { limit, after, status } = keys[0]!;
  if (limit === 0) return keys.map(() => []);
  let inner = db
    .selectFrom("environments")
    .selectAll()
    .select(sql<string>`row_number() over (partition by tenant_id, project_id order by environment_id)`.as("rn"))
    .where((eb) => eb(eb.refTuple("tenant_id", "project_id"), "in", keys.map((k) => eb.tuple(k.tenantId, k.projectId))));
  if (after !== undefined) inner = inner.where("environment_id", ">", after);
  if (status !== undefined) inner = inner.where("status", "=", status);
  const rows = await db
    .selectFrom(inner.as("page"))
    .selectAll()
    .where("rn", "<=", String(limit))
    .orderBy("tenant_id")
    .orderBy("project_id")
    .orderBy("environment_id")
    .execute();
  const byProject = groupBy(rows.map(({ rn: _rn, ...row }) => row as EnvironmentRow), (row) => key(row.tenant_id, row.project_id));
  return keys.map((k) => byProject.get(key(k.tenantId, k.projectId)) ?? []);
}

function key(...parts: string[]): string {
  return JSON.stringify(parts);
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

function groupBy<T>(rows: readonly T[], keyOf: (row: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const row of rows) {
    const k = keyOf(row);
    const list = out.get(k);
    if (list) list.push(row);
    else out.set(k, [row]);
  }
  return out;
}
