import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { Command } from "commander";
import { isMap, isSeq, LineCounter, parseDocument, type Node } from "yaml";
import { CliError, ExitCode, usageError } from "../core/errors.ts";
import { render, type Column } from "../core/output.ts";
import { listAll, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";

/** dvce inventory import|diff|approve (host commands: ./host.ts). The YAML is parsed here; the server validates. */
export const HOST_COLUMNS: Column<Resource>[] = [
  { header: "id", value: (r) => r.id },
  { header: "datacenter", value: (r) => r.datacenter },
  { header: "name", value: (r) => r.name },
  { header: "rack", value: (r) => r.rack },
  { header: "serial", value: (r) => r.serial },
  { header: "role", value: (r) => r.role },
  { header: "pending", value: (r) => (r.pendingIdentityChange ? "identity change" : "") },
];
const ITEM_COLUMNS: Column<Resource>[] = [
  { header: "kind", value: (r) => r.kind },
  { header: "datacenter", value: (r) => r.datacenter },
  { header: "name", value: (r) => r.name },
  { header: "outcome", value: (r) => r.outcome },
  { header: "changes", value: (r) => [...((r.changes as string[]) ?? []), ...(((r.pendingChange as { fields?: string[] })?.fields ?? []).map((f) => `pending ${f}`))].join(", ") },
];

/** Reads FILE.yaml, resolves passwordFile next to it, and keeps where each path is in the file. */
export async function loadInventoryFile(file: string): Promise<{ document: unknown; lineOf: (path: string) => number | undefined }> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw usageError(`cannot read ${file}: ${(error as Error).message}`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  if (doc.errors.length > 0) throw usageError(`${file} is not valid YAML:\n${doc.errors.map((e) => `  - ${e.message}`).join("\n")}`);
  const document = doc.toJS() as unknown;
  const base = dirname(resolve(file));
  for (const dc of asArray((document as { datacenters?: unknown })?.datacenters)) {
    for (const rack of asArray((dc as { racks?: unknown }).racks)) {
      for (const host of asArray((rack as { hosts?: unknown }).hosts)) {
        const bmc = (host as { bmc?: Record<string, unknown> }).bmc;
        if (bmc && typeof bmc.passwordFile === "string") {
          try {
            bmc.password = (await readFile(resolve(base, bmc.passwordFile), "utf8")).replace(/\r?\n$/, "");
          } catch (error) {
            throw usageError(`passwordFile ${bmc.passwordFile} (of host ${(host as { name?: string }).name}) cannot be read: ${(error as Error).message}`);
          }
          delete bmc.passwordFile;
        }
      }
    }
  }
  const lineOf = (path: string) => {
    const segments = [...path.replace(/^document\.?/, "").matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));
    for (let n = segments.length; n >= 0; n--) {
      const node = doc.getIn(segments.slice(0, n), true) as Node | undefined;
      if (node && (node as Node).range) return lines.linePos((node as Node).range![0]).line;
      if (n === 0 && (isMap(doc.contents) || isSeq(doc.contents))) return 1;
    }
    return undefined;
  };
  return { document, lineOf };
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value.filter((v) => typeof v === "object" && v !== null) : [];
}

export function registerInventoryCommands(program: Command, runtime: Runtime): void {
  const inventory = program.command("inventory").summary("datacenters, racks, hosts, switches, links").description("the platform's hardware inventory");

  const runImport = async (file: string, dryRun: boolean, command: Command) => {
    const { document, lineOf } = await loadInventoryFile(file);
    const client = await runtime.client(command);
    let response;
    try {
      response = await client.request("POST", "/v1/inventory/import", { body: { document, dryRun } });
    } catch (error) {
      if (error instanceof CliError && error.problem && error.problem.fields.length > 0) {
        const lines = error.problem.fields.map((f) => {
          const line = lineOf(f.field);
          return `  ${file}${line !== undefined ? `:${line}` : ""}: ${f.field.replace(/^document\./, "")}: ${f.message}`;
        });
        throw new CliError(error.exitCode, `${error.problem.detail ?? error.message}\n${lines.join("\n")}`);
      }
      throw error;
    }
    const report = response.body as { items: Resource[]; summary: Record<string, number> };
    render(runtime.io, runtime.format(command), report, { rows: report.items, columns: ITEM_COLUMNS, empty: "Nothing in the file." });
    if (runtime.format(command) === "table") {
      const s = report.summary;
      runtime.out(`${dryRun ? "would be: " : ""}${s.created} created, ${s.updated} updated, ${s.unchanged} unchanged, ${s["pending-approval"]} waiting for approval\n`);
    }
  };

  inventory
    .command("import")
    .description("import an inventory file (YAML); the same file again changes nothing")
    .argument("<file>", "inventory YAML")
    .option("--dry-run", "only show what would change")
    .action(async (file: string, options: { dryRun?: boolean }, command: Command) => runImport(file, options.dryRun === true, command));

  inventory
    .command("diff")
    .description("show what importing the file would change (a dry run)")
    .argument("<file>", "inventory YAML")
    .action(async (file: string, _options, command: Command) => runImport(file, true, command));

  inventory
    .command("approve")
    .description("approve a host's pending identity change (serial, MACs, BMC address)")
    .argument("<host>", "host id, or name (with --datacenter when ambiguous)")
    .option("--datacenter <name>", "the host's datacenter")
    .option("--change <id>", "the change you reviewed")
    .action(async (ref: string, options: { datacenter?: string; change?: string }, command: Command) => {
      const client = await runtime.client(command);
      const host = await resolveHost(client, ref, options.datacenter);
      const response = await client.request("POST", `/v1/hosts/${encodeURIComponent(String(host.id))}/approve-identity`, { body: options.change ? { changeId: options.change } : {} });
      const body = response.body as Resource;
      render(runtime.io, runtime.format(command), body, { rows: [body], columns: HOST_COLUMNS });
    });
}

export async function resolveHost(client: Awaited<ReturnType<Runtime["client"]>>, ref: string, datacenter?: string): Promise<Resource> {
  try {
    return await client.get<Resource>(`/v1/hosts/${encodeURIComponent(ref)}`);
  } catch (error) {
    if (!(error instanceof CliError) || error.exitCode !== ExitCode.notFound) throw error;
  }
  const named = await listAll(client, "/v1/hosts", { name: ref, datacenter });
  if (named.length === 1) return named[0]!;
  if (named.length > 1) throw usageError(`${named.length} hosts are named ${ref}: pass --datacenter`);
  throw new CliError(ExitCode.notFound, `host ${ref} not found`);
}
