import { createKysely, createPool } from "../../adapters/postgres/connection.ts";
import { migrateToLatest } from "../../migrations/index.ts";
import { urlFor, withAdmin } from "./postgres.ts";

/**
 * Builds a migrated template once per test run; every test file clones it.
 * Named per run so concurrent runs on one server never touch each other's databases.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const template = `dv_tpl_${process.pid}_${Date.now().toString(36)}`;
  process.env.DV_TEST_TEMPLATE = template;
  await withAdmin((admin) => admin.query(`create database ${template}`));
  const db = createKysely<unknown>(createPool(urlFor(template), { max: 1 }));
  try {
    await migrateToLatest(db);
  } finally {
    await db.destroy();
  }
  return async () => {
    await withAdmin((admin) => admin.query(`drop database if exists ${template} with (force)`));
  };
}
