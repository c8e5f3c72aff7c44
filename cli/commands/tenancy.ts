import { randomUUID } from "node:crypto";
import { InvalidArgumentError, type Command } from "commander";
import type { Context } from "../core/config.ts";
import { CliError, ExitCode, usageError } from "../core/errors.ts";
import type { ApiClient, ApiResponse } from "../core/http.ts";
import { formatAge, render, type Column } from "../core/output.ts";
import { idOf, listAll, notFound, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";
import { watch } from "./watch-task.ts";

/** The tenancy routes of the REST API, in one place. */
export const paths = {
  tenants: () => "/v1/tenants",
  tenant: (t: string) => `/v1/tenants/${enc(t)}`,
  projects: (t: string) => `/v1/tenants/${enc(t)}/projects`,
  project: (t: string, p: string) => `/v1/tenants/${enc(t)}/projects/${enc(p)}`,
  environments: (t: string, p: string) => `/v1/tenants/${enc(t)}/projects/${enc(p)}/environments`,
  environment: (t: string, p: string, e: string) => `/v1/tenants/${enc(t)}/projects/${enc(p)}/environments/${enc(e)}`,
  tenantQuota: (t: string) => `/v1/tenants/${enc(t)}/quota`,
  projectQuota: (t: string, p: string) => `/v1/tenants/${enc(t)}/projects/${enc(p)}/quota`,
};

function enc(segment: string): string {
  return encodeURIComponent(segment);
}

export const TENANT_COLUMNS: Column<Resource>[] = [
  { header: "id", value: (r) => r.id },
  { header: "name", value: (r) => r.name },
  { header: "display-name", value: (r) => r.displayName },
  { header: "status", value: (r) => r.status },
  { header: "age", value: (r) => formatAge(r.createdAt) },
];

export const PROJECT_COLUMNS: Column<Resource>[] = [
  { header: "id", value: (r) => r.id },
  { header: "name", value: (r) => r.name },
  { header: "status", value: (r) => r.status },
  { header: "age", value: (r) => formatAge(r.createdAt) },
  { header: "description", value: (r) => r.description },
];

export const ENVIRONMENT_COLUMNS: Column<Resource>[] = [
  { header: "id", value: (r) => r.id },
  { header: "name", value: (r) => r.name },
  { header: "status", value: (r) => r.status },
  { header: "age", value: (r) => formatAge(r.createdAt) },
];

/** Names are DNS labels (RFC 1123); anything else can only be an id. */
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A reference that may be an id or a name: the id first, then `?name=` (an
 * active one before an archived or suspended one).
 */
async function resolve(client: ApiClient, kind: string, itemPath: string, listPath: string, ref: string, where?: string): Promise<Resource> {
  try {
    return await client.get<Resource>(itemPath);
  } catch (error) {
    if (!(error instanceof CliError) || error.exitCode !== ExitCode.notFound) throw error;
    if (!DNS_LABEL.test(ref)) throw notFound(kind, ref, where);
  }
  const named = (await listAll(client, listPath, { name: ref })).filter((r) => r.name === ref);
  const pick = named.find((r) => r.status === "active") ?? named[0];
  if (!pick) throw notFound(kind, ref, where);
  return pick;
}

export function resolveTenant(client: ApiClient, ref: string): Promise<Resource> {
  return resolve(client, "tenant", paths.tenant(ref), paths.tenants(), ref);
}

export function resolveProject(client: ApiClient, tenantId: string, ref: string): Promise<Resource> {
  return resolve(client, "project", paths.project(tenantId, ref), paths.projects(tenantId), ref, `tenant ${tenantId}`);
}

export function resolveEnvironment(client: ApiClient, tenantId: string, projectId: string, ref: string): Promise<Resource> {
  return resolve(client, "environment", paths.environment(tenantId, projectId, ref), paths.environments(tenantId, projectId), ref, `project ${projectId}`);
}

export interface ScopeFlags {
  tenant?: string;
  project?: string;
}

/** The tenant id: --tenant (id or name), else the context's tenant (an id). */
export async function tenantScope(client: ApiClient, context: Context | undefined, flags: ScopeFlags): Promise<string> {
  if (flags.tenant === undefined) {
    if (context?.tenant) return context.tenant;
    throw usageError("no tenant: pass --tenant ID|NAME", "or set a default: `dv context set --tenant ID`");
  }
  return idOf(await resolveTenant(client, flags.tenant)) ?? flags.tenant;
}

/** Tenant and project ids: flags (ids or names), else the context's. */
export async function projectScope(client: ApiClient, context: Context | undefined, flags: ScopeFlags): Promise<{ tenantId: string; projectId: string }> {
  const tenantId = await tenantScope(client, context, flags);
  if (flags.project === undefined) {
    // The context's project belongs to the context's tenant only.
    if (context?.project && tenantId === context.tenant) return { tenantId, projectId: context.project };
    throw usageError("no project: pass --project ID|NAME", "or set a default: `dv context set --project ID`");
  }
  return { tenantId, projectId: idOf(await resolveProject(client, tenantId, flags.project)) ?? flags.project };
}

/**
 * The resource a write left behind. The API answers with it once its read
 * model has caught up; when that took too long it answers 202 with the
 * write's position and location, and the resource is read there, waiting
 * for that position (?minPosition=).
 */
export async function written(client: ApiClient, response: ApiResponse<unknown>): Promise<Resource> {
  const body = (response.body ?? {}) as Resource;
  if (response.status !== 202 || body.status !== "accepted") return body;
  const location = typeof body.location === "string" ? body.location : response.headers.get("location");
  if (!location) return body;
  return client.get<Resource>(location, { query: { minPosition: typeof body.position === "string" ? body.position : undefined } });
}

/** POST with an Idempotency-Key: a retry after a dropped connection cannot create twice. */
export function create(client: ApiClient, path: string, body: unknown): Promise<ApiResponse<unknown>> {
  return client.request("POST", path, { body, headers: { "idempotency-key": randomUUID() } });
}

/** How long `project create --wait` waits for the saga to create the bootstrap task. */
const BOOTSTRAP_APPEAR_MS = 30_000;

const withTenant = (command: Command) => command.option("--tenant <id|name>", "tenant (default: the context's)");
const withProject = (command: Command) => withTenant(command).option("--project <id|name>", "project (default: the context's)");

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive whole number");
  return n;
}

export function registerTenancyCommands(program: Command, runtime: Runtime): void {
  const show = (command: Command, value: Resource, columns: Column<Resource>[]) =>
    render(runtime.io, runtime.format(command), value, { rows: [value], columns });

  // ---- tenants
  const tenant = program.command("tenant").summary("tenants").description("tenants: the unit of isolation, billing and quota; projects hang off one");

  tenant
    .command("create")
    .description("create a tenant")
    .argument("<name>", "DNS label: lowercase a-z, 0-9 and '-'")
    .option("--display-name <text>", "human-friendly name")
    .action(async (name: string, options: { displayName?: string }, command: Command) => {
      const client = await runtime.client(command);
      const response = await create(client, paths.tenants(), { name, ...(options.displayName !== undefined ? { displayName: options.displayName } : {}) });
      show(command, await written(client, response), TENANT_COLUMNS);
    });

  tenant
    .command("list")
    .description("list the tenants you can see")
    .option("--status <status>", "only active or suspended ones")
    .option("--limit <n>", "at most this many", positiveInt)
    .action(async (options: { status?: string; limit?: number }, command: Command) => {
      const client = await runtime.client(command);
      const items = await listAll(client, paths.tenants(), { status: options.status }, options.limit);
      render(runtime.io, runtime.format(command), items, { rows: items, columns: TENANT_COLUMNS, empty: "No tenants." });
    });

  tenant
    .command("get")
    .description("show one tenant")
    .argument("<tenant>", "id or name")
    .action(async (ref: string, _options, command: Command) => {
      show(command, await resolveTenant(await runtime.client(command), ref), TENANT_COLUMNS);
    });

  tenant
    .command("rename")
    .description("give a tenant a new name, and optionally a new display name")
    .argument("<tenant>", "id or name")
    .argument("<new-name>", "DNS label")
    .option("--display-name <text>", "new display name (\"\" clears it)")
    .action(async (ref: string, newName: string, options: { displayName?: string }, command: Command) => {
      const client = await runtime.client(command);
      const id = idOf(await resolveTenant(client, ref)) ?? ref;
      const displayName = options.displayName === undefined ? {} : { displayName: options.displayName === "" ? null : options.displayName };
      const response = await client.request("PATCH", paths.tenant(id), { body: { name: newName, ...displayName } });
      show(command, await written(client, response), TENANT_COLUMNS);
    });

  tenant
    .command("suspend")
    .description("suspend a tenant: nothing new can be created in it until it is resumed")
    .argument("<tenant>", "id or name")
    .requiredOption("--reason <text>", "why (kept in the tenant's history)")
    .action(async (ref: string, options: { reason: string }, command: Command) => {
      const client = await runtime.client(command);
      const id = idOf(await resolveTenant(client, ref)) ?? ref;
      const response = await client.request("POST", `${paths.tenant(id)}/suspend`, { body: { reason: options.reason } });
      show(command, await written(client, response), TENANT_COLUMNS);
    });

  tenant
    .command("resume")
    .description("resume a suspended tenant")
    .argument("<tenant>", "id or name")
    .action(async (ref: string, _options, command: Command) => {
      const client = await runtime.client(command);
      const id = idOf(await resolveTenant(client, ref)) ?? ref;
      const response = await client.request("POST", `${paths.tenant(id)}/resume`, { body: {} });
      show(command, await written(client, response), TENANT_COLUMNS);
    });

  // ---- projects
  const project = program.command("project").summary("projects of a tenant").description("projects: a tenant's units of work, each with environments and a quota");

  withTenant(project.command("create").description("create a project in a tenant"))
    .argument("<name>", "DNS label, unique among the tenant's active projects")
    .option("--description <text>", "what the project is for")
    .option("--with-default-environments", "also create dev and prod and apply the tenant's quota, as a task")
    .option("--wait", "with --with-default-environments: follow that task until it ends")
    .action(async (name: string, options: ScopeFlags & { description?: string; withDefaultEnvironments?: boolean; wait?: boolean }, command: Command) => {
      if (options.wait && !options.withDefaultEnvironments) throw usageError("--wait needs --with-default-environments (a plain create has nothing to wait for)");
      const client = await runtime.client(command);
      const tenantId = await tenantScope(client, await runtime.context(command), options);
      const response = await create(client, paths.projects(tenantId), {
        name,
        ...(options.description !== undefined ? { description: options.description } : {}),
        ...(options.withDefaultEnvironments ? { withDefaultEnvironments: true } : {}),
      });
      const project = await written(client, response);
      const taskId = response.headers.get("x-dv-task");
      if (options.wait && taskId) {
        runtime.err(`project ${String(project.name)} (${String(project.id)}) created; bootstrap task ${taskId}\n`);
        // The saga creates the task once the request reaches it over NATS: a moment's 404 is "not yet".
        return watch(runtime, command, taskId, { appearWithinMs: BOOTSTRAP_APPEAR_MS });
      }
      show(command, project, PROJECT_COLUMNS);
      if (taskId && runtime.format(command) === "table") runtime.err(`bootstrap task ${taskId}: follow it with \`dv task watch ${taskId}\`\n`);
    });

  withTenant(project.command("list").description("list a tenant's projects"))
    .option("--status <status>", "only active or archived ones")
    .option("--limit <n>", "at most this many", positiveInt)
    .action(async (options: ScopeFlags & { status?: string; limit?: number }, command: Command) => {
      const client = await runtime.client(command);
      const tenantId = await tenantScope(client, await runtime.context(command), options);
      const items = await listAll(client, paths.projects(tenantId), { status: options.status }, options.limit);
      render(runtime.io, runtime.format(command), items, { rows: items, columns: PROJECT_COLUMNS, empty: "No projects." });
    });

  withTenant(project.command("get").description("show one project"))
    .argument("<project>", "id or name")
    .action(async (ref: string, options: ScopeFlags, command: Command) => {
      const client = await runtime.client(command);
      const tenantId = await tenantScope(client, await runtime.context(command), options);
      show(command, await resolveProject(client, tenantId, ref), PROJECT_COLUMNS);
    });

  withTenant(project.command("archive").description("archive a project (archive its environments first); its name becomes free again"))
    .argument("<project>", "id or name")
    .action(async (ref: string, options: ScopeFlags, command: Command) => {
      const client = await runtime.client(command);
      const tenantId = await tenantScope(client, await runtime.context(command), options);
      const id = idOf(await resolveProject(client, tenantId, ref)) ?? ref;
      const response = await client.request("POST", `${paths.project(tenantId, id)}/archive`, { body: {} });
      show(command, await written(client, response), PROJECT_COLUMNS);
    });

  // ---- environments
  const env = program.command("env").summary("environments of a project").description("environments: where a project's resources run (dev, staging, prod)");

  withProject(env.command("create").description("create an environment in a project"))
    .argument("<name>", "DNS label, unique among the project's active environments")
    .action(async (name: string, options: ScopeFlags, command: Command) => {
      const client = await runtime.client(command);
      const { tenantId, projectId } = await projectScope(client, await runtime.context(command), options);
      const response = await create(client, paths.environments(tenantId, projectId), { name });
      show(command, await written(client, response), ENVIRONMENT_COLUMNS);
    });

  withProject(env.command("list").description("list a project's environments"))
    .option("--status <status>", "only active or archived ones")
    .option("--limit <n>", "at most this many", positiveInt)
    .action(async (options: ScopeFlags & { status?: string; limit?: number }, command: Command) => {
      const client = await runtime.client(command);
      const { tenantId, projectId } = await projectScope(client, await runtime.context(command), options);
      const items = await listAll(client, paths.environments(tenantId, projectId), { status: options.status }, options.limit);
      render(runtime.io, runtime.format(command), items, { rows: items, columns: ENVIRONMENT_COLUMNS, empty: "No environments." });
    });

  withProject(env.command("get").description("show one environment"))
    .argument("<environment>", "id or name")
    .action(async (ref: string, options: ScopeFlags, command: Command) => {
      const client = await runtime.client(command);
      const { tenantId, projectId } = await projectScope(client, await runtime.context(command), options);
      show(command, await resolveEnvironment(client, tenantId, projectId, ref), ENVIRONMENT_COLUMNS);
    });

  withProject(env.command("archive").description("archive an environment; its name becomes free again"))
    .argument("<environment>", "id or name")
    .action(async (ref: string, options: ScopeFlags, command: Command) => {
      const client = await runtime.client(command);
      const { tenantId, projectId } = await projectScope(client, await runtime.context(command), options);
      const id = idOf(await resolveEnvironment(client, tenantId, projectId, ref)) ?? ref;
      const response = await client.request("POST", `${paths.environment(tenantId, projectId, id)}/archive`, { body: {} });
      show(command, await written(client, response), ENVIRONMENT_COLUMNS);
    });
}
