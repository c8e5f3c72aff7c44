import { sql, type Kysely } from "kysely";

/**
 * Work can be addressed to one worker within a datacenter (a hypervisor
 * host): `sagas.outstanding_work.target` keeps it, so the health check asks
 * after that worker's heartbeats rather than any worker of the service.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table sagas.outstanding_work add column target text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table sagas.outstanding_work drop column target`.execute(db);
}
