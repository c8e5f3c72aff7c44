import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { apiBenchmarks } from "./api.ts";
import { eventStoreBenchmarks } from "./eventstore.ts";
import { graphqlBenchmarks } from "./graphql.ts";
import { pgbenchBaseline } from "./pgbench.ts";
import { logBenchmarks } from "./tenancy-log.ts";
import { log, type BenchResult } from "./support.ts";

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes("--quick");

function meets(result: BenchResult): string {
  if (result.target === null) return "reference";
  const ok = result.better === "lower" ? result.value <= result.target : result.value >= result.target;
  return ok ? "met" : "MISSED";
}

function table(results: readonly BenchResult[]): string {
  const rows = results.map((r) => `| ${r.name} | ${r.value.toLocaleString("en")} ${r.unit} | ${r.target === null ? "–" : `${r.better === "lower" ? "≤" : "≥"} ${r.target.toLocaleString("en")}`} | ${meets(r)} |`);
  return ["| benchmark | result | target | |", "|---|---|---|---|", ...rows].join("\n");
}

const results: BenchResult[] = [
  ...(await pgbenchBaseline(quick ? 3 : 10)),
  ...(await eventStoreBenchmarks()),
  ...(await logBenchmarks({ minEvents: quick ? 20_000 : 200_000 })),
  ...(await apiBenchmarks(quick ? { seconds: 3, writes: 100 } : {})),
  ...(await graphqlBenchmarks(quick ? { seconds: 3, writes: 100 } : {})),
];

await mkdir(join(here, "results"), { recursive: true });
await writeFile(join(here, "results", "latest.json"), `${JSON.stringify(results, null, 2)}\n`);

const readmePath = join(here, "README.md");
const readme = await readFile(readmePath, "utf8").catch(() => "# Benchmarks\n");
const marker = /<!-- results:start -->[\s\S]*<!-- results:end -->/;
const block = `<!-- results:start -->\nLast run: ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, ${quick ? "quick mode" : "full"}.\n\n${table(results)}\n<!-- results:end -->`;
await writeFile(readmePath, marker.test(readme) ? readme.replace(marker, block) : `${readme.trimEnd()}\n\n${block}\n`);

console.log(table(results));
log("wrote bench/results/latest.json and the table in bench/README.md");
