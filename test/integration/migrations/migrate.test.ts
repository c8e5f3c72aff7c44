import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.ts";

const run = promisify(execFile);

/** `npm run migrate` as an operator runs it: twice on a fresh database, the second time changing nothing. */
describe("npm run migrate", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ empty: true });
  });
  afterAll(async () => {
    await database.drop();
  });

  const migrate = () =>
    run(process.execPath, ["--import", "tsx", "migrations/cli.ts"], { env: { ...process.env, DATABASE_URL: database.url } });

  it("creates the schema on a fresh database and is idempotent", async () => {
    const first = await migrate();
    expect(first.stdout).toMatch(/applied: 0001_event_store/);
    expect(first.stdout).toMatch(/tenancy created/);
    const second = await migrate();
    expect(second.stdout).toMatch(/database is up to date/);
    expect(second.stdout).not.toMatch(/created|rebuil/);
  });
});
