import { sql, type Kysely } from "kysely";

/** Schema `relay` (issue 4). Filled in by the relay work; empty until then. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists relay`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema if exists relay cascade`.execute(db);
}
