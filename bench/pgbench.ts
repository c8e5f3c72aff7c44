import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { dropDatabase, freshDatabase, log, type BenchResult } from "./support.ts";

const run = promisify(execFile);

/**
 * The physical reference: one single-row INSERT per transaction, as pgbench
 * measures it on the same server in the same run. One durable commit per row
 * is what a store without group commit can reach at best.
 */
export async function pgbenchBaseline(seconds: number): Promise<BenchResult[]> {
  const database = "dv_bench_pgbench";
  const url = new URL(await freshDatabase(database, { migrate: false }));
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  await client.query("create table rows (id bigserial primary key, payload text not null)");
  await client.end();
  const script = join(tmpdir(), "dv-bench-insert.sql");
  await writeFile(script, "insert into rows (payload) values ('x');\n");
  const results: BenchResult[] = [];
  try {
    for (const clients of [1, 32]) {
      log(`pgbench: ${clients} client(s), ${seconds}s`);
      const { stdout } = await run(
        "pgbench",
        ["-h", url.hostname, "-p", url.port || "5432", "-U", decodeURIComponent(url.username) || "postgres", "-n",
         "-f", script, "-c", String(clients), "-j", String(Math.min(clients, 2)), "-T", String(seconds), database],
        { env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) } },
      ).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") throw new Error("pgbench is missing: apt-get install --no-install-recommends postgresql-contrib (or postgresql-client)");
        throw error;
      });
      const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1]);
      results.push({ name: `pgbench single-row insert, ${clients} client${clients > 1 ? "s" : ""}`, value: Math.round(tps), unit: "rows/s", target: null, better: "higher", note: "one commit per row: the physical reference" });
    }
  } finally {
    await dropDatabase(database);
  }
  return results;
}
