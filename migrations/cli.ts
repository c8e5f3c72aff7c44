import type { Kysely } from "kysely";
import { createKysely, createPool, databaseUrl } from "../adapters/postgres/connection.ts";
import { ensureDatabase } from "../adapters/postgres/database.ts";
import { migrateToLatest } from "./index.ts";
import { allProjections, ensureProjectionSchemas } from "../projections/index.ts";

const url = databaseUrl();
await ensureDatabase(url);
const pool = createPool(url, { max: 1 });
const db = createKysely<unknown>(pool);
try {
  const applied = await migrateToLatest(db);
  console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");

  // Read projections create their own schemas (projections/setup.ts); a changed definition is rebuilt by the runner.
  const projections = await ensureProjectionSchemas(db as Kysely<any>, allProjections);
  console.log(`projections: ${projections.map((p) => `${p.name} ${p.action}`).join(", ")}`);
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await db.destroy();
}
