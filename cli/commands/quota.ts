import { InvalidArgumentError, type Command } from "commander";
import { usageError } from "../core/errors.ts";
import { render, type Column } from "../core/output.ts";
import type { Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";
import { paths, projectScope, tenantScope, written } from "./tenancy.ts";

/** Quota resources: CLI flag -> API field. */
export const QUOTA_FLAGS = [
  ["vcpus", "vcpus", "virtual CPUs"],
  ["memory-mib", "memoryMiB", "memory in MiB"],
  ["vms", "vms", "virtual machines"],
  ["hosts", "hosts", "bare-metal hosts"],
  ["networks", "networks", "networks"],
  ["buckets", "buckets", "object storage buckets"],
] as const;

type Limits = Record<string, number | null>;

/**
 * A limit value: a non-negative whole number, or `none`/`unlimited` to remove
 * the limit (returned as "none": commander turns a parser's null into "").
 */
export function parseLimit(value: string): number | "none" {
  const v = value.trim().toLowerCase();
  if (v === "none" || v === "unlimited" || v === "-") return "none";
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError("expected a whole number >= 0, or `none` to remove the limit");
  return Number(v);
}

/** The limits object of a quota answer: `{ limits: {...} }` or the fields at the top level. */
export function limitsOf(body: Resource): Limits {
  const source = (typeof body.limits === "object" && body.limits !== null ? body.limits : body) as Record<string, unknown>;
  const limits: Limits = {};
  for (const [, key] of QUOTA_FLAGS) {
    const value = source[key];
    limits[key] = typeof value === "number" ? value : typeof value === "string" && value !== "" ? Number(value) : null;
  }
  return limits;
}

function usageOf(body: Resource): Record<string, unknown> {
  return (typeof body.usage === "object" && body.usage !== null ? body.usage : {}) as Record<string, unknown>;
}

function quotaRows(body: Resource) {
  const limits = limitsOf(body);
  const usage = usageOf(body);
  return QUOTA_FLAGS.map(([flag, key]) => ({ resource: flag, limit: limits[key], used: usage[key] }));
}

type QuotaRow = ReturnType<typeof quotaRows>[number];

function columns(body: Resource): Column<QuotaRow>[] {
  const cols: Column<QuotaRow>[] = [
    { header: "resource", value: (r) => r.resource },
    { header: "limit", value: (r) => (r.limit === null ? "unlimited" : r.limit) },
  ];
  if (typeof body.usage === "object" && body.usage !== null) cols.push({ header: "used", value: (r) => r.used });
  return cols;
}

interface QuotaOptions {
  tenant?: string;
  project?: string;
  [flag: string]: unknown;
}

export function registerQuotaCommands(program: Command, runtime: Runtime): void {
  const quota = program
    .command("quota")
    .summary("tenant and project quotas")
    .description("quotas: caps on what a tenant (or one of its projects) may use; a project's cap never exceeds its tenant's");

  const scoped = (command: Command) =>
    command
      .option("--tenant <id|name>", "tenant (default: the context's)")
      .option("--project <id|name>", "a project's quota instead of the tenant's");

  const pathFor = async (command: Command, options: QuotaOptions) => {
    const client = await runtime.client(command);
    const context = await runtime.context(command);
    if (options.project !== undefined) {
      const { tenantId, projectId } = await projectScope(client, context, options);
      return { client, path: paths.projectQuota(tenantId, projectId) };
    }
    return { client, path: paths.tenantQuota(await tenantScope(client, context, options)) };
  };

  scoped(quota.command("get").description("show a tenant's quota, or a project's with --project"))
    .action(async (options: QuotaOptions, command: Command) => {
      const { client, path } = await pathFor(command, options);
      const body = await client.get<Resource>(path);
      render(runtime.io, runtime.format(command), body, { rows: quotaRows(body), columns: columns(body) });
    });

  const set = scoped(quota.command("set").summary("change limits").description("change limits; resources not named keep their limit, `none` removes one"));
  for (const [flag, , what] of QUOTA_FLAGS) set.option(`--${flag} <n>`, `limit on ${what} (or none)`, parseLimit);
  set.action(async (options: QuotaOptions, command: Command) => {
    const changes: Limits = {};
    for (const [flag, key] of QUOTA_FLAGS) {
      const optionKey = flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
      const value = options[optionKey] as number | "none" | undefined;
      if (value !== undefined) changes[key] = value === "none" ? null : value;
    }
    if (Object.keys(changes).length === 0) {
      throw usageError(`name at least one limit: ${QUOTA_FLAGS.map(([flag]) => `--${flag}`).join(", ")}`);
    }
    const { client, path } = await pathFor(command, options);
    // PUT replaces the whole quota: read it, change the named limits, and write it back pinned to
    // the version read (If-Match), so a concurrent change is a 412 (exit 3), never silently undone.
    const current = await client.request<Resource>("GET", path);
    const etag = current.headers.get("etag");
    const limits = { ...limitsOf(current.body), ...changes };
    const response = await client.request("PUT", path, { body: { limits }, headers: etag ? { "if-match": etag } : {} });
    const body = (await written(client, response)) as Resource;
    render(runtime.io, runtime.format(command), body, { rows: quotaRows(body), columns: columns(body) });
  });
}
