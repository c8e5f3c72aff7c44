import { createKysely, createPool, databaseUrl } from "../adapters/postgres/connection.ts";
import { ensureDatabase } from "../adapters/postgres/database.ts";
import { migrateToLatest } from "./index.ts";

const url = databaseUrl();
await ensureDatabase(url);
const pool = createPool(url, { max: 1 });
const db = createKysely<unknown>(pool);
try {
  const applied = await migrateToLatest(db);
  console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await db.destroy();
}
