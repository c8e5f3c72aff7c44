import type { Command } from "commander";
import { randomUUID } from "node:crypto";
import { CliError, ExitCode, usageError } from "../core/errors.ts";
import type { ApiClient } from "../core/http.ts";
import { render, type Column } from "../core/output.ts";
import { listAll, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";
import { HOST_COLUMNS, resolveHost } from "./inventory.ts";
import { resolveEnvironment, projectScope, type ScopeFlags } from "./tenancy.ts";
import { watch } from "./watch-task.ts";

/**
 * dvce host list|get|power status|on|off|cycle|reset|soft|provision|release
 * and dvce bmc check. Actions start a task on the server (POST
 * /v1/hosts/{id}/...; the answer names it in X-Dv-Task); `--wait` follows
 * it to its end (exit 0 succeeded, 6 failed, 7 cancelled), else the task id
 * is printed. `power status` shows what the read model knows (observed power
 * as accepted from two agreeing BMC reads, desired power, drift); `--live`
 * asks the BMC now through a bmc-check task.
 */
const STATUS_COLUMNS: Column<Resource>[] = [
  { header: "host", value: (r) => r.name ?? r.hostId },
  { header: "state", value: (r) => r.state },
  { header: "stage", value: (r) => r.stage ?? "" },
  { header: "observed", value: (r) => power(r).observed ?? "unknown" },
  { header: "desired", value: (r) => power(r).desired ?? "" },
  { header: "drift", value: (r) => (power(r).drift ? `yes, since ${power(r).driftSince ?? "?"}` : "no") },
  { header: "task", value: (r) => r.taskId ?? "" },
];
const HOST_STATUS_COLUMNS: Column<Resource>[] = [
  ...HOST_COLUMNS.filter((c) => c.header !== "pending"),
  { header: "state", value: (r) => (r.status as Resource | undefined)?.state },
  { header: "power", value: (r) => power((r.status ?? {}) as Resource).observed ?? "unknown" },
  { header: "drift", value: (r) => (power((r.status ?? {}) as Resource).drift ? "yes" : "no") },
  { header: "pending", value: (r) => (r.pendingIdentityChange ? "identity change" : "") },
];
const TASK_COLUMNS: Column<Resource>[] = [
  { header: "task", value: (r) => r.taskId },
  { header: "kind", value: (r) => r.kind },
];

function power(status: Resource): { observed?: string | null; desired?: string | null; drift?: boolean; driftSince?: string | null } {
  return (status.power ?? {}) as { observed?: string | null; desired?: string | null; drift?: boolean; driftSince?: string | null };
}

/**
 * The host by id or name. Only platform readers can look hosts up; anyone
 * else (a tenant-admin provisioning a free host, releasing their own) names
 * it by id, and the action's answer says whether they may.
 */
async function findHost(client: ApiClient, ref: string, datacenter?: string): Promise<Resource> {
  try {
    return await resolveHost(client, ref, datacenter);
  } catch (error) {
    if (error instanceof CliError && error.exitCode === ExitCode.auth) return { id: ref, name: ref };
    throw error;
  }
}

const hostPath = (host: Resource, action: string) => `/v1/hosts/${encodeURIComponent(String(host.id))}/${action}`;

/** How long --wait allows the tasks read model to show a task the server just created. */
const APPEAR_MS = 15_000;

/** Starts the task, then follows it (--wait) or prints its id. */
async function startTask(runtime: Runtime, command: Command, client: ApiClient, path: string, body: unknown, wait: boolean, what: string): Promise<string> {
  const response = await client.request("POST", path, { body, headers: { "idempotency-key": randomUUID() } });
  const started = (response.body ?? {}) as Resource;
  const taskId = String(started.taskId ?? response.headers.get("x-dv-task") ?? "");
  if (!taskId) throw new CliError(ExitCode.server, `the server started ${what} but named no task`);
  if (wait) {
    if (runtime.format(command) === "table") runtime.err(`${what}: task ${taskId}\n`);
    await watch(runtime, command, taskId, { appearWithinMs: APPEAR_MS });
    return taskId;
  }
  render(runtime.io, runtime.format(command), started, { rows: [started], columns: TASK_COLUMNS });
  if (runtime.format(command) === "table") runtime.err(`${what}: follow it with \`dv task watch ${taskId}\`\n`);
  return taskId;
}

const withHost = (command: Command) => command.argument("<host>", "host id or name (only platform readers can look names up: others give the id)").option("--datacenter <name>", "the host's datacenter (when the name is ambiguous)");
const withWait = (command: Command) => command.option("--wait", "follow the task until it ends");

export function registerHostCommands(program: Command, runtime: Runtime): void {
  const host = program.command("host").summary("hosts: list, power, provision, release").description("physical hosts");

  host
    .command("list")
    .description("list hosts")
    .option("--datacenter <name>", "only this datacenter")
    .option("--pending", "only hosts waiting for an identity approval")
    .action(async (options: { datacenter?: string; pending?: boolean }, command: Command) => {
      const client = await runtime.client(command);
      const items = await listAll(client, "/v1/hosts", { datacenter: options.datacenter, pendingApproval: options.pending ? "true" : undefined });
      render(runtime.io, runtime.format(command), items, { rows: items, columns: HOST_COLUMNS, empty: "No hosts." });
    });

  withHost(host.command("get").description("show one host: inventory (BMC endpoint, never a password), state, power and drift")).action(
    async (ref: string, options: { datacenter?: string }, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveHost(client, ref, options.datacenter);
      const status = await client.get<Resource>(hostPath(found, "status"));
      const shown = { ...found, status };
      render(runtime.io, runtime.format(command), shown, { rows: [shown], columns: HOST_STATUS_COLUMNS });
    },
  );

  const powerCommand = host.command("power").summary("status|on|off|cycle|reset|soft").description("a host's power: what is known, and actions through its BMC");
  withWait(
    withHost(powerCommand.command("status").description("observed power (two agreeing BMC reads), desired power and drift; --live asks the BMC now")).option(
      "--live",
      "read the BMC now through a bmc-check task (waits for it)",
    ),
  ).action(async (ref: string, options: { datacenter?: string; live?: boolean; wait?: boolean }, command: Command) => {
    const client = await runtime.client(command);
    const found = await resolveHost(client, ref, options.datacenter);
    if (options.live) return bmcCheck(runtime, command, client, found);
    const status = { ...(await client.get<Resource>(hostPath(found, "status"))), name: found.name };
    render(runtime.io, runtime.format(command), status, { rows: [status], columns: STATUS_COLUMNS });
  });
  for (const [operation, description] of [
    ["on", "power on (nothing when it is on already)"],
    ["off", "power off, hard (nothing when it is off already)"],
    ["soft", "ask the OS to shut down (ACPI)"],
    ["cycle", "power cycle (off, then on)"],
    ["reset", "hard reset"],
  ] as const) {
    withWait(withHost(powerCommand.command(operation).description(description))).action(
      async (ref: string, options: { datacenter?: string; wait?: boolean }, command: Command) => {
        const client = await runtime.client(command);
        const found = await findHost(client, ref, options.datacenter);
        await startTask(runtime, command, client, hostPath(found, "power"), { operation }, options.wait === true, `power ${operation} ${String(found.name)}`);
      },
    );
  }

  withWait(
    withHost(host.command("provision").description("install the host for a project (boot PXE, power on, netboot, install, boot disk) as a task"))
      .option("--tenant <id|name>", "tenant (default: the context's)")
      .option("--project <id|name>", "project (default: the context's)")
      .option("--environment <id|name>", "environment of the project")
      .option("--role <role>", "worker or controlplane", "worker"),
  ).action(async (ref: string, options: ScopeFlags & { datacenter?: string; environment?: string; role: string; wait?: boolean }, command: Command) => {
    if (options.role !== "worker" && options.role !== "controlplane") throw usageError(`--role must be worker or controlplane, not ${options.role}`);
    const client = await runtime.client(command);
    const found = await findHost(client, ref, options.datacenter);
    const { tenantId, projectId } = await projectScope(client, await runtime.context(command), options);
    const environmentId = options.environment === undefined ? undefined : String((await resolveEnvironment(client, tenantId, projectId, options.environment)).id);
    const body = { tenantId, projectId, ...(environmentId ? { environmentId } : {}), role: options.role };
    await startTask(runtime, command, client, hostPath(found, "provision"), body, options.wait === true, `provision ${String(found.name)}`);
  });

  withWait(withHost(host.command("release").description("power off, wipe and return the host to the free pool, as a task"))).action(
    async (ref: string, options: { datacenter?: string; wait?: boolean }, command: Command) => {
      const client = await runtime.client(command);
      const found = await findHost(client, ref, options.datacenter);
      await startTask(runtime, command, client, hostPath(found, "release"), {}, options.wait === true, `release ${String(found.name)}`);
    },
  );

  const bmc = program.command("bmc").summary("check a host's BMC").description("baseboard management controllers");
  withHost(bmc.command("check").description("ask the host's BMC for its power status now (a task) and show its answer and the exchanges"))
    .option("--wait", "follow the task (always: the answer is the point)")
    .action(async (ref: string, options: { datacenter?: string }, command: Command) => {
      const client = await runtime.client(command);
      await bmcCheck(runtime, command, client, await resolveHost(client, ref, options.datacenter));
    });
}

/** Runs a bmc-check task to its end and prints what the BMC said (and how each exchange went). */
async function bmcCheck(runtime: Runtime, command: Command, client: ApiClient, host: Resource): Promise<void> {
  const taskId = await startTask(runtime, command, client, hostPath(host, "bmc-check"), {}, true, `bmc check ${String(host.name)}`);
  if (runtime.exitCode !== ExitCode.ok) return;
  const outputs = await client.get<{ steps: Array<{ name: string; output: Record<string, unknown> | null }> }>(hostPath(host, `tasks/${encodeURIComponent(taskId)}/outputs`));
  const output = outputs.steps.find((s) => s.name === "power-status")?.output ?? {};
  if (runtime.format(command) === "json") {
    runtime.out(`${JSON.stringify({ taskId, host: host.name, ...output })}\n`);
    return;
  }
  runtime.out(`${String(host.name)}: power ${String(output.after ?? output.before ?? "unknown")}\n`);
  const exchanges = Array.isArray(output.exchanges) ? (output.exchanges as Array<Record<string, unknown>>) : [];
  for (const x of exchanges) {
    const argv = Array.isArray(x.command) ? (x.command as string[]).join(" ") : "";
    runtime.out(`  ${String(x.operation ?? "")} ${String(x.target ?? "")} ${String(x.outcome ?? "")} exit=${String(x.exitCode ?? "-")} ${String(x.durationMs ?? "?")}ms  ${argv}\n`);
  }
}
