import { sql, type Kysely } from "kysely";

/** Schema `sagas` (issue 4). Filled in by the sagas work; empty until then. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists sagas`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema if exists sagas cascade`.execute(db);
}
