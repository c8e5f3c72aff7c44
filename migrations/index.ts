import { Migrator, type Kysely, type Migration, type MigrationProvider } from "kysely";
import * as eventStore from "./0001_event_store.ts";
import * as projections from "./0002_projections.ts";
import * as identitet from "./0003_identitet.ts";
import * as api from "./0004_api.ts";
import * as eventStoreReadOrder from "./0005_eventstore_read_order.ts";
import * as relay from "./0006_relay.ts";
import * as sagas from "./0007_sagas.ts";
import * as secrets from "./0008_secrets.ts";
import * as workTarget from "./0009_work_target.ts";

/**
 * Every migration, in order. Listed statically (not read from the folder) so
 * the set is checked by the compiler and identical wherever the code runs.
 */
export const migrations: Record<string, Migration> = {
  "0001_event_store": eventStore,
  "0002_projections": projections,
  "0003_identitet": identitet,
  "0004_api": api,
  "0005_eventstore_read_order": eventStoreReadOrder,
  "0006_relay": relay,
  "0007_sagas": sagas,
  "0008_secrets": secrets,
  "0009_work_target": workTarget,
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

export class MigrationFailedError extends Error {
  override readonly name = "MigrationFailedError";
  constructor(readonly migration: string | undefined, cause: unknown) {
    super(`migration ${migration ?? "(unknown)"} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** Brings the database to the latest schema; running it again changes nothing. */
export async function migrateToLatest(db: Kysely<unknown>): Promise<string[]> {
  const migrator = new Migrator({ db, provider, migrationTableSchema: "public" });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error) throw new MigrationFailedError(failed?.migrationName, error);
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}
