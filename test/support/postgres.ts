import { randomBytes } from "node:crypto";
import pg from "pg";

/** Admin URL of the real test server; TEST_DATABASE_ADMIN_URL overrides it. */
export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
/** The migrated database each test file clones (CREATE DATABASE ... TEMPLATE is much faster than migrating); made by global-setup. */
function templateDatabase(): string {
  const name = process.env.DV_TEST_TEMPLATE;
  if (!name) throw new Error("DV_TEST_TEMPLATE is not set: run tests through vitest (test/support/global-setup.ts makes the template)");
  return name;
}

export function urlFor(database: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `PostgreSQL is not reachable at ${ADMIN_URL} (${(error as Error).message}). ` +
        "Tests need a real server: run `bash .ci/run` once (it installs and starts Debian's postgresql), " +
        "or `apt-get install --no-install-recommends postgresql && pg_ctlcluster 15 main start`.",
    );
  }
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

/** A fresh database for one test file: migrated (cloned from the template) unless `empty`. */
export async function createTestDatabase(options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const name = `dv_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(async (admin) => {
    const template = options.empty ? "template0" : templateDatabase();
    // Two files cloning the template at the same instant collide on its lock; try again.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`create database ${name} template ${template}`);
        return;
      } catch (error) {
        if ((error as { code?: string }).code !== "55006" || attempt > 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100));
      }
    }
  });
  return {
    name,
    url: urlFor(name),
    drop: () => withAdmin(async (admin) => void (await admin.query(`drop database if exists ${name} with (force)`))),
  };
}
