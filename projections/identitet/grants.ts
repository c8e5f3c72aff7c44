import { sql, type ColumnType, type Kysely, type Selectable } from "kysely";
import type { RecordedEvent } from "../../adapters/eventstore/port.ts";
import {
  IDENTITY_EVENT_TYPES,
  identityEventSchemas,
  isIdentityEventType,
  type IdentityEvent,
} from "../../domain/identitet/events.ts";
import { roleKey, roleTenant, type Role, type RoleName } from "../../domain/identitet/roles.ts";
import type { SubjectKind } from "../../domain/identitet/subjects.ts";
import { defineProjection } from "../projection.ts";

/**
 * Identitet grants read model: who holds which role right now. Schema
 * `grants` (not `identitet`: that schema belongs to migration 0003 and holds
 * the signing keys and the bootstrap hash, state that is not derived from the
 * log and must survive a rebuild, which swaps whole schemas).
 *
 * - role_grants: one row per held role; a revocation deletes it (history
 *   stays in the log). Keyed by (subject, role_key), role_key being the
 *   domain's canonical `roleKey(role)`.
 * - subjects: every subject that was ever granted a role, with its kind
 *   (user | service), kept when its last role is revoked. Service-account
 *   token issuance and the actor's kind for OIDC subjects read it.
 *
 * The API reads this on every authenticated request (through a short cache,
 * see api/auth/principals.ts), so a revocation takes effect as soon as the
 * projection has applied it.
 */

type Timestamp = ColumnType<Date, Date, Date>;

export interface RoleGrantsTable {
  subject: string;
  role_key: string;
  role: RoleName;
  /** Null for platform-wide roles (platform-admin, auditor of all tenants). */
  tenant_id: string | null;
  /** Set for project-member only. */
  project_id: string | null;
  subject_kind: SubjectKind;
  granted_at: Timestamp;
  /** The envelope actor of the grant, `kind:id`. */
  granted_by: string;
  /** Position in the subject's stream of the grant. */
  version: number;
}

export interface SubjectsTable {
  subject: string;
  subject_kind: SubjectKind;
  created_at: Timestamp;
  updated_at: Timestamp;
  /** Position in the subject's stream of its last event. */
  version: number;
}

export interface GrantsTables {
  role_grants: RoleGrantsTable;
  subjects: SubjectsTable;
}

export type RoleGrantRow = Selectable<RoleGrantsTable>;
export type SubjectRow = Selectable<SubjectsTable>;

export const GRANTS_SCHEMA = "grants";

export const grantsProjection = defineProjection<GrantsTables>({
  name: GRANTS_SCHEMA,
  version: 1,
  tables: ["role_grants", "subjects"],
  eventTypes: IDENTITY_EVENT_TYPES,

  async createTables(db: Kysely<any>, schema: string) {
    const s = db.schema.withSchema(schema);
    await s
      .createTable("role_grants")
      .addColumn("subject", "text", (c) => c.notNull())
      .addColumn("role_key", "text", (c) => c.notNull())
      .addColumn("role", "text", (c) =>
        c.notNull().check(sql`role in ('platform-admin', 'tenant-admin', 'project-member', 'auditor')`))
      .addColumn("tenant_id", "text")
      .addColumn("project_id", "text")
      .addColumn("subject_kind", "text", (c) => c.notNull().check(sql`subject_kind in ('user', 'service')`))
      .addColumn("granted_at", "timestamptz", (c) => c.notNull())
      .addColumn("granted_by", "text", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addPrimaryKeyConstraint("role_grants_pkey", ["subject", "role_key"])
      .addCheckConstraint("role_grants_shape", sql`case role
        when 'platform-admin' then tenant_id is null and project_id is null
        when 'tenant-admin' then tenant_id is not null and project_id is null
        when 'project-member' then tenant_id is not null and project_id is not null
        else project_id is null end`)
      .execute();
    // Tenant-scoped lists (a tenant-admin's view) and "who may act in this project".
    await s.createIndex("role_grants_tenant").on("role_grants").columns(["tenant_id", "subject", "role_key"]).execute();

    await s
      .createTable("subjects")
      .addColumn("subject", "text", (c) => c.primaryKey())
      .addColumn("subject_kind", "text", (c) => c.notNull().check(sql`subject_kind in ('user', 'service')`))
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .execute();
  },

  async handle(db, recorded) {
    const event = parseIdentityEvent(recorded);
    if (!event) return;
    const at = recorded.occurredAt;
    const version = recorded.streamPosition;
    const { subject } = event.data;

    switch (event.type) {
      case "RoleGranted": {
        const { role, subjectKind } = event.data;
        await db
          .insertInto("subjects")
          .values({ subject, subject_kind: subjectKind, created_at: at, updated_at: at, version })
          .onConflict((oc) => oc.column("subject").doUpdateSet({ updated_at: at, version }))
          .execute();
        await db
          .insertInto("role_grants")
          .values({
            subject,
            role_key: roleKey(role),
            role: role.role,
            tenant_id: roleTenant(role),
            project_id: role.role === "project-member" ? role.projectId : null,
            subject_kind: subjectKind,
            granted_at: at,
            granted_by: `${recorded.actor.kind}:${recorded.actor.id}`,
            version,
          })
          .execute();
        return;
      }
      case "RoleRevoked": {
        await expectOne(
          db.deleteFrom("role_grants").where("subject", "=", subject).where("role_key", "=", roleKey(event.data.role)).executeTakeFirst(),
          "numDeletedRows",
          recorded,
        );
        await expectOne(
          db.updateTable("subjects").set({ updated_at: at, version }).where("subject", "=", subject).executeTakeFirst(),
          "numUpdatedRows",
          recorded,
        );
        return;
      }
    }
  },
});

/** Validates against the published schema; a version without an upcaster stops the projection. */
export function parseIdentityEvent(recorded: RecordedEvent): IdentityEvent | undefined {
  if (!isIdentityEventType(recorded.type)) return undefined;
  const entry = identityEventSchemas[recorded.type];
  if (recorded.schemaVersion !== entry.schemaVersion) {
    throw new Error(
      `${recorded.type} ${recorded.id}: schema version ${recorded.schemaVersion}, the grants projection reads ${entry.schemaVersion} (upcaster missing?)`,
    );
  }
  return { type: recorded.type, data: entry.schema.parse(recorded.data) } as IdentityEvent;
}

async function expectOne<K extends "numDeletedRows" | "numUpdatedRows">(
  result: Promise<Record<K, bigint>>,
  field: K,
  recorded: RecordedEvent,
): Promise<void> {
  const outcome = await result;
  if (outcome[field] !== 1n) {
    throw new Error(
      `${recorded.type} ${recorded.id} (stream ${recorded.streamId}@${recorded.streamPosition}) matched ${outcome[field]} rows, expected 1`,
    );
  }
}

// ---------------------------------------------------------------------------
// Queries (the API's reads). `db` is any Kysely on the database; the queries
// name the live schema themselves.

function grants(db: Kysely<any>): Kysely<GrantsTables> {
  return db.withSchema(GRANTS_SCHEMA) as Kysely<GrantsTables>;
}

/** A row back into the Role contract (absent ids absent, not null). */
export function roleOf(row: Pick<RoleGrantRow, "role" | "tenant_id" | "project_id">): Role {
  switch (row.role) {
    case "platform-admin":
      return { role: "platform-admin" };
    case "tenant-admin":
      return { role: "tenant-admin", tenantId: row.tenant_id! };
    case "project-member":
      return { role: "project-member", tenantId: row.tenant_id!, projectId: row.project_id! };
    case "auditor":
      return row.tenant_id === null ? { role: "auditor" } : { role: "auditor", tenantId: row.tenant_id };
  }
}

/** The roles a subject holds now, in a stable order; [] for a subject unknown or with every role revoked. */
export async function rolesOf(db: Kysely<any>, subject: string): Promise<Role[]> {
  const rows = await grants(db)
    .selectFrom("role_grants")
    .select(["role", "tenant_id", "project_id"])
    .where("subject", "=", subject)
    .orderBy("role_key")
    .execute();
  return rows.map(roleOf);
}

export interface Principal {
  readonly subject: string;
  /** Null when the subject was never granted anything. */
  readonly kind: SubjectKind | null;
  readonly roles: Role[];
}

/** Kind and roles of a subject in one round trip. */
export async function principalOf(db: Kysely<any>, subject: string): Promise<Principal> {
  const rows = await grants(db)
    .selectFrom("subjects")
    .leftJoin("role_grants", "role_grants.subject", "subjects.subject")
    .select([
      "subjects.subject_kind as kind",
      "role_grants.role as role",
      "role_grants.tenant_id as tenant_id",
      "role_grants.project_id as project_id",
    ])
    .where("subjects.subject", "=", subject)
    .orderBy("role_grants.role_key")
    .execute();
  const first = rows[0];
  if (!first) return { subject, kind: null, roles: [] };
  const roles = rows.flatMap((row) => (row.role === null ? [] : [roleOf({ role: row.role, tenant_id: row.tenant_id, project_id: row.project_id })]));
  return { subject, kind: first.kind, roles };
}

export async function getSubject(db: Kysely<any>, subject: string): Promise<SubjectRow | undefined> {
  return grants(db).selectFrom("subjects").selectAll().where("subject", "=", subject).executeTakeFirst();
}

export interface GrantListFilter {
  readonly subject?: string;
  /** Only grants inside this tenant. */
  readonly tenantId?: string;
  /**
   * What the caller may see: "all" (platform grants included), or only the
   * grants inside these tenants. Applied in SQL, so other rows are never read.
   */
  readonly visibleTenants: "all" | readonly string[];
  /** Keyset: rows after this (subject, role_key). */
  readonly after?: { readonly subject: string; readonly roleKey: string };
  readonly limit: number;
}

/** Grants ordered by (subject, role_key), filtered by visibility in SQL. */
export async function listGrants(db: Kysely<any>, filter: GrantListFilter): Promise<RoleGrantRow[]> {
  if (filter.visibleTenants !== "all" && filter.visibleTenants.length === 0) return [];
  let query = grants(db).selectFrom("role_grants").selectAll();
  if (filter.visibleTenants !== "all") query = query.where("tenant_id", "in", [...filter.visibleTenants]);
  if (filter.subject !== undefined) query = query.where("subject", "=", filter.subject);
  if (filter.tenantId !== undefined) query = query.where("tenant_id", "=", filter.tenantId);
  if (filter.after) {
    const { subject, roleKey: key } = filter.after;
    query = query.where((eb) => eb.or([eb("subject", ">", subject), eb.and([eb("subject", "=", subject), eb("role_key", ">", key)])]));
  }
  return query.orderBy("subject").orderBy("role_key").limit(filter.limit).execute();
}
