import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { apiBenchmarks } from "./api.ts";
import { eventStoreBenchmarks } from "./eventstore.ts";
import { graphqlBenchmarks } from "./graphql.ts";
import { pgbenchBaseline } from "./pgbench.ts";
import { placementBenchmarks } from "./placement.ts";
import { vmBenchmarks } from "./vms.ts";
import { relayBenchmarks } from "./relay.ts";
import { sagaBenchmarks } from "./sagas.ts";
import { logBenchmarks } from "./tenancy-log.ts";
import { log, type BenchResult } from "./support.ts";

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes("--quick");
/** `--only relay,sagas` (or `--only=relay,sagas`): run just those groups; see GROUPS. */
const onlyArg = process.argv.find((a) => a.startsWith("--only="))?.slice("--only=".length) ?? process.argv[process.argv.indexOf("--only") + 1];
const only = process.argv.some((a) => a === "--only" || a.startsWith("--only=")) ? (onlyArg ?? "").split(",").filter(Boolean) : null;

function meets(result: BenchResult): string {
  if (result.target === null) return "reference";
  const ok = result.better === "lower" ? result.value <= result.target : result.value >= result.target;
  return ok ? "met" : "MISSED";
}

function table(results: readonly BenchResult[]): string {
  const rows = results.map((r) => `| ${r.name} | ${r.value.toLocaleString("en")} ${r.unit} | ${r.target === null ? "–" : `${r.better === "lower" ? "≤" : "≥"} ${r.target.toLocaleString("en")}`} | ${meets(r)} |`);
  return ["| benchmark | result | target | |", "|---|---|---|---|", ...rows].join("\n");
}

/** The benchmark groups in run order; `--only` names a subset. */
const GROUPS: ReadonlyArray<readonly [name: string, run: () => Promise<BenchResult[]>]> = [
  ["pgbench", () => pgbenchBaseline(quick ? 3 : 10)],
  ["eventstore", () => eventStoreBenchmarks()],
  ["log", () => logBenchmarks({ minEvents: quick ? 20_000 : 200_000 })],
  ["api", () => apiBenchmarks(quick ? { seconds: 3, writes: 100 } : {})],
  ["graphql", () => graphqlBenchmarks(quick ? { seconds: 3, writes: 100 } : {})],
  ["relay", () => relayBenchmarks({ events: quick ? 20_000 : 100_000 })],
  ["sagas", () => sagaBenchmarks({ sagas: quick ? 200 : 1_000 })],
  ["placement", () => placementBenchmarks({ rounds: quick ? 3 : 7 })],
  ["vms", () => vmBenchmarks({ vms: quick ? 5 : 15 })],
];
const unknown = only?.filter((name) => !GROUPS.some(([group]) => group === name)) ?? [];
if (only && (only.length === 0 || unknown.length > 0)) {
  console.error(`--only takes a comma-separated list of: ${GROUPS.map(([group]) => group).join(", ")}${unknown.length ? ` (unknown: ${unknown.join(", ")})` : ""}`);
  process.exit(2);
}

const results: BenchResult[] = [];
for (const [group, run] of GROUPS) if (!only || only.includes(group)) results.push(...(await run()));

// A subset run leaves latest.json and the full table alone: it writes results/only-<groups>.json and a block of its own.
const tag = only ? `only=${only.join(",")}` : null;
await mkdir(join(here, "results"), { recursive: true });
await writeFile(join(here, "results", tag ? `only-${only!.join("-")}.json` : "latest.json"), `${JSON.stringify(results, null, 2)}\n`);

const readmePath = join(here, "README.md");
const readme = await readFile(readmePath, "utf8").catch(() => "# Benchmarks\n");
const start = tag ? `<!-- results:${tag}:start -->` : "<!-- results:start -->";
const end = tag ? `<!-- results:${tag}:end -->` : "<!-- results:end -->";
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const marker = new RegExp(`${escape(start)}[\\s\\S]*${escape(end)}`);
const block = `${start}\nLast run: ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, ${quick ? "quick mode" : "full"}${tag ? `, ${tag}` : ""}.\n\n${table(results)}\n${end}`;
await writeFile(readmePath, marker.test(readme) ? readme.replace(marker, () => block) : `${readme.trimEnd()}\n\n${block}\n`);

console.log(table(results));
log(`wrote bench/results/${tag ? `only-${only!.join("-")}` : "latest"}.json and the table in bench/README.md`);
