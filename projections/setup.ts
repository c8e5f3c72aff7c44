import { sql, type Kysely } from "kysely";
import { SETUP_LOCK_CLASS, schemaExists } from "./checkpoints.ts";
import { liveSchema, validateProjections, type AnyProjection } from "./projection.ts";

export type SetupAction =
  /** Schema, tables and a checkpoint at START were created. */
  | "created"
  /** Already there; nothing changed. */
  | "exists"
  /** The checkpoint existed but the schema was gone: tables recreated, checkpoint reset to START. */
  | "recreated"
  /** Tables existed without a checkpoint (unknown provenance): kept as they are and marked for a rebuild. */
  | "adopted";

export interface SetupResult {
  readonly name: string;
  readonly action: SetupAction;
}

/**
 * Makes sure every projection has its schema, its tables and a checkpoint row.
 * Idempotent and safe to run concurrently (`npm run migrate`, every runner's
 * setup()). It never alters or drops existing tables: a projection whose
 * definition version changed is rebuilt beside the live one by the runner.
 */
export async function ensureProjectionSchemas(db: Kysely<any>, projections: readonly AnyProjection[]): Promise<SetupResult[]> {
  validateProjections(projections);
  const results: SetupResult[] = [];
  for (const projection of projections) {
    const action = await db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${SETUP_LOCK_CLASS}, hashtext(${projection.name}))`.execute(trx);
      const schema = liveSchema(projection);
      const { rows } = await sql<{ name: string }>`select name from projections.checkpoints where name = ${projection.name}`.execute(trx);
      const hasCheckpoint = rows.length > 0;
      const hasSchema = await schemaExists(trx, schema);
      if (hasCheckpoint && hasSchema) return "exists" as const;
      if (!hasCheckpoint && hasSchema) {
        await sql`insert into projections.checkpoints (name, transaction_id, global_position, definition_version)
          values (${projection.name}, '0'::xid8, 0, null)`.execute(trx);
        return "adopted" as const;
      }
      await createProjectionTables(trx, projection, schema);
      await sql`insert into projections.checkpoints (name, transaction_id, global_position, definition_version)
        values (${projection.name}, '0'::xid8, 0, ${projection.version})
        on conflict (name) do update set transaction_id = '0'::xid8, global_position = 0,
          definition_version = excluded.definition_version, events_applied = 0, last_error = null,
          last_error_at = null, updated_at = now()`.execute(trx);
      return hasCheckpoint ? ("recreated" as const) : ("created" as const);
    });
    results.push({ name: projection.name, action });
  }
  return results;
}

/** Creates `schema` and the projection's tables in it, then checks every listed table exists. */
export async function createProjectionTables(db: Kysely<any>, projection: AnyProjection, schema: string): Promise<void> {
  await sql`create schema ${sql.id(schema)}`.execute(db);
  await projection.createTables(db, schema);
  const { rows } = await sql<{ table_name: string }>`select table_name from information_schema.tables
    where table_schema = ${schema}`.execute(db);
  const present = new Set(rows.map((row) => row.table_name));
  const missing = projection.tables.filter((name) => !present.has(name));
  if (missing.length) {
    throw new Error(`projection ${projection.name}: createTables did not create ${missing.join(", ")} in schema ${schema}`);
  }
}
