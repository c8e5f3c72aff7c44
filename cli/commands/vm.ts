import type { Command } from "commander";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { CliError, ExitCode, usageError } from "../core/errors.ts";
import type { ApiClient } from "../core/http.ts";
import { render, type Column } from "../core/output.ts";
import { listAll, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";
import { projectScope, resolveEnvironment, type ScopeFlags } from "./tenancy.ts";
import { watch } from "./watch-task.ts";

/**
 * dvce vm create|list|get|start|stop|reboot|delete|explain|console|reconcile.
 * Actions start a task on the server (202, X-Dv-Task); `--wait` follows it
 * to its end (exit 0 succeeded, 6 failed, 7 cancelled), else the task id is
 * printed. A VM is named by id, or by name within the project (--project or
 * the context's). `console --follow` keeps reading the serial log from the
 * offset the last read ended at.
 */
const VM_COLUMNS: Column<Resource>[] = [
  { header: "id", value: (r) => r.vmId },
  { header: "name", value: (r) => r.name },
  { header: "state", value: (r) => r.state },
  { header: "desired", value: (r) => r.desired },
  { header: "observed", value: (r) => r.observed ?? "" },
  { header: "drift", value: (r) => r.drift ?? "" },
  { header: "hypervisor", value: (r) => (r.hypervisor as Resource | null)?.name ?? "" },
  { header: "ssh", value: (r) => ((r.sshPorts as Array<{ port: number }> | undefined) ?? []).map((p) => p.port).join(",") },
  { header: "vcpus", value: (r) => (r.resources as Resource | undefined)?.vcpus },
  { header: "memoryMiB", value: (r) => (r.resources as Resource | undefined)?.memoryMiB },
];
const TASK_COLUMNS: Column<Resource>[] = [
  { header: "task", value: (r) => r.taskId },
  { header: "kind", value: (r) => r.kind },
  { header: "vm", value: (r) => r.vmId },
];
const REJECTED_COLUMNS: Column<Resource>[] = [
  { header: "hypervisor", value: (r) => r.hypervisor },
  { header: "reason", value: (r) => r.reason },
  { header: "detail", value: (r) => r.detail },
];

/** How long --wait allows the tasks read model to show a task the server just created. */
const APPEAR_MS = 15_000;
const vmPath = (vmId: string, action?: string) => `/v1/vms/${encodeURIComponent(vmId)}${action ? `/${action}` : ""}`;

/** A VM by id, or by its name among the VMs the caller sees (within --project when given). */
async function resolveVm(client: ApiClient, ref: string, projectId?: string): Promise<Resource> {
  try {
    return await client.get<Resource>(vmPath(ref));
  } catch (error) {
    if (!(error instanceof CliError && error.exitCode === ExitCode.notFound)) throw error;
  }
  const items = await listAll(client, "/v1/vms", { ...(projectId ? { projectId } : {}) });
  const named = items.filter((vm) => vm.name === ref);
  if (named.length === 1) return named[0]!;
  if (named.length > 1) throw usageError(`${named.length} VMs are named ${ref}: give the id (${named.map((v) => String(v.vmId)).join(", ")}) or --project`);
  throw new CliError(ExitCode.notFound, `no VM ${ref}`);
}

async function startTask(runtime: Runtime, command: Command, client: ApiClient, method: "POST" | "DELETE", path: string, body: unknown, wait: boolean, what: string): Promise<string> {
  const response = await client.request(method, path, { ...(body !== undefined ? { body } : {}), headers: { "idempotency-key": randomUUID() } });
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

const withVm = (command: Command) => command.argument("<vm>", "VM id or name").option("--project <id|name>", "the VM's project (to find it by name)").option("--tenant <id|name>", "the project's tenant");
const withWait = (command: Command) => command.option("--wait", "follow the task until it ends");
const collect = (value: string, previous: string[]) => [...previous, value];
const positiveInt = (name: string, value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw usageError(`${name} must be a whole number, not ${value}`);
  return n;
};

async function projectIdOf(runtime: Runtime, command: Command, client: ApiClient, options: ScopeFlags): Promise<string | undefined> {
  if (options.project === undefined) return undefined;
  return (await projectScope(client, await runtime.context(command), options)).projectId;
}

export function registerVmCommands(program: Command, runtime: Runtime): void {
  const vm = program.command("vm").summary("virtual machines: create, list, power, console, delete").description("virtual machines on Maskin's hypervisors");

  withWait(
    vm
      .command("create")
      .description("create a VM in a project: placed on a hypervisor (explained), disk, seed, started — as a task")
      .argument("<name>", "the VM's name (its hostname)")
      .option("--tenant <id|name>", "tenant (default: the context's)")
      .option("--project <id|name>", "project (default: the context's)")
      .option("--environment <id|name>", "environment of the project")
      .requiredOption("--datacenter <name>", "datacenter")
      .option("--vcpus <n>", "vCPUs", "1")
      .option("--memory <MiB>", "memory in MiB", "1024")
      .option("--disk-size <GiB>", "disk size in GiB", "10")
      .option("--image <name@version>", "image (the disk template's and the boot image)")
      .option("--disk <name>", "disk image name (default: <name>-disk)")
      .option("--disk-mode <mode>", "CreateIfNotExist or FailIfNotExist", "CreateIfNotExist")
      .option("--storage-class <name>", "storage class of a disk image created here", "local")
      .option("--anti-affinity <group[:max]>", "at most max (default 1) VMs of the group per hypervisor")
      .option("--spread <group>", "spread the group's VMs over hypervisors")
      .option("--ssh-key <key|@file>", "an SSH public key for the guest (repeatable; @file reads it)", collect, [] as string[])
      .option("--user-data <@file>", "cloud-init user data from a file"),
  ).action(async (name: string, options: ScopeFlags & Record<string, string | string[] | boolean | undefined>, command: Command) => {
    // Flags first: a bad invocation sends nothing.
    const mode = String(options.diskMode);
    if (mode !== "CreateIfNotExist" && mode !== "FailIfNotExist") throw usageError(`--disk-mode must be CreateIfNotExist or FailIfNotExist, not ${mode}`);
    let image: { name: string; version: string } | undefined;
    if (typeof options.image === "string") {
      const [imageName, version] = options.image.split("@");
      if (!imageName || !version) throw usageError(`--image must be name@version, not ${options.image}`);
      image = { name: imageName, version };
    }
    const sizeGiB = positiveInt("--disk-size", String(options.diskSize));
    if (mode === "CreateIfNotExist" && !image) throw usageError("a disk image created here needs --image name@version (its template)");
    let antiAffinity: { group: string; maxPerHypervisor: number } | undefined;
    if (typeof options.antiAffinity === "string") {
      const [group, max] = options.antiAffinity.split(":");
      antiAffinity = { group: group!, maxPerHypervisor: max === undefined ? 1 : positiveInt("--anti-affinity max", max) };
    }
    const client = await runtime.client(command);
    const { tenantId, projectId } = await projectScope(client, await runtime.context(command), options);
    const environmentId = typeof options.environment === "string" ? String((await resolveEnvironment(client, tenantId, projectId, options.environment)).id) : undefined;
    const keys = await Promise.all((options.sshKey as string[]).map(async (k) => (k.startsWith("@") ? (await readFile(k.slice(1), "utf8")).trim() : k)));
    const userData = typeof options.userData === "string" ? await readFile(options.userData.replace(/^@/, ""), "utf8") : undefined;
    const body = {
      name,
      tenantId,
      projectId,
      ...(environmentId ? { environmentId } : {}),
      datacenter: options.datacenter,
      resources: { vcpus: positiveInt("--vcpus", String(options.vcpus)), memoryMiB: positiveInt("--memory", String(options.memory)), diskGiB: sizeGiB },
      ...(image ? { image } : {}),
      disk: {
        name: typeof options.disk === "string" ? options.disk : `${name}-disk`,
        mode,
        ...(mode === "CreateIfNotExist" && image ? { template: { image, sizeGiB, storageClass: String(options.storageClass) } } : {}),
      },
      ...(antiAffinity ? { antiAffinity } : {}),
      ...(typeof options.spread === "string" ? { spreadGroup: options.spread } : {}),
      sshAuthorizedKeys: keys,
      ...(userData !== undefined ? { userData } : {}),
    };
    await startTask(runtime, command, client, "POST", "/v1/vms", body, options.wait === true, `create VM ${name}`);
  });

  vm.command("list")
    .description("list the VMs you can see")
    .option("--tenant <id|name>", "tenant (with --project)")
    .option("--project <id|name>", "only this project")
    .action(async (options: ScopeFlags, command: Command) => {
      const client = await runtime.client(command);
      const projectId = await projectIdOf(runtime, command, client, options);
      const items = await listAll(client, "/v1/vms", { ...(projectId ? { projectId } : {}) });
      render(runtime.io, runtime.format(command), items, { rows: items, columns: VM_COLUMNS, empty: "No VMs." });
    });

  withVm(vm.command("get").description("show a VM: state, desired, observed, drift, hypervisor, SSH ports, disk, NICs, warnings")).action(
    async (ref: string, options: ScopeFlags, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveVm(client, ref, await projectIdOf(runtime, command, client, options));
      render(runtime.io, runtime.format(command), found, { rows: [found], columns: VM_COLUMNS });
      if (runtime.format(command) === "table") {
        for (const nic of (found.nics as Array<Resource> | undefined) ?? []) runtime.out(`nic ${String(nic.index)}: ${String(nic.network)} ${String(nic.mac)}\n`);
        for (const w of (found.warnings as Array<Resource> | undefined) ?? []) runtime.out(`warning: disk ${String(w.field)} is ${String(w.existing)}, you asked for ${String(w.requested)}\n`);
        if (found.failureReason) runtime.out(`failed: ${String(found.failureReason)}\n`);
      }
    },
  );

  withVm(vm.command("explain").description("why the VM was placed where it is, or why nothing fits: every hypervisor not chosen with its reason")).action(
    async (ref: string, options: ScopeFlags, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveVm(client, ref, await projectIdOf(runtime, command, client, options));
      const explained = await client.get<Resource>(vmPath(String(found.vmId), "explain"));
      if (runtime.format(command) === "json") return render(runtime.io, "json", explained, { rows: [], columns: [] });
      const chosen = explained.chosen as Resource | undefined;
      if (explained.outcome === "placed") runtime.out(`placed on ${String(chosen?.hypervisor)} (${JSON.stringify(chosen?.score ?? {})})\n`);
      else if (explained.outcome === "blocked") runtime.out(`blocked (${String(explained.blocking)}): ${String(explained.reason)}\n`);
      else runtime.out("not placed yet\n");
      const rejected = (explained.rejected as Resource[] | undefined) ?? [];
      if (rejected.length > 0) render(runtime.io, "table", rejected, { rows: rejected, columns: REJECTED_COLUMNS });
    },
  );

  for (const [operation, description] of [
    ["start", "start a stopped VM"],
    ["stop", "stop a VM: ACPI powerdown, then hard after --acpi-timeout"],
    ["reboot", "reset a running VM"],
    ["reconcile", "act on drift: start it, stop it, or destroy a process left after deletion; nothing when in sync"],
  ] as const) {
    const sub = withWait(withVm(vm.command(operation).description(`${description} (a task)`)));
    if (operation === "stop") sub.option("--acpi-timeout <ms>", "how long ACPI may take before the hard stop");
    sub.action(async (ref: string, options: ScopeFlags & { wait?: boolean; acpiTimeout?: string }, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveVm(client, ref, await projectIdOf(runtime, command, client, options));
      const body = options.acpiTimeout !== undefined ? { acpiTimeoutMs: positiveInt("--acpi-timeout", options.acpiTimeout) } : {};
      await startTask(runtime, command, client, "POST", vmPath(String(found.vmId), operation), body, options.wait === true, `${operation} VM ${String(found.name)}`);
    });
  }

  withWait(withVm(vm.command("delete").description("delete a VM: destroy it, release capacity, SSH port and disk image reference (a task)"))).action(
    async (ref: string, options: ScopeFlags & { wait?: boolean }, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveVm(client, ref, await projectIdOf(runtime, command, client, options));
      await startTask(runtime, command, client, "DELETE", vmPath(String(found.vmId)), undefined, options.wait === true, `delete VM ${String(found.name)}`);
    },
  );

  withVm(vm.command("console").description("print the VM's serial console; --follow keeps reading"))
    .option("--follow", "keep reading new output (Ctrl-C stops)")
    .option("--offset <bytes>", "start here (default: the beginning)", "0")
    .action(async (ref: string, options: ScopeFlags & { follow?: boolean; offset: string }, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveVm(client, ref, await projectIdOf(runtime, command, client, options));
      let offset = positiveInt("--offset", options.offset);
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once("SIGINT", stop);
      try {
        for (;;) {
          const chunk = await client.get<{ text: string; nextOffset: number; size: number }>(vmPath(String(found.vmId), "console"), { query: { offset, maxBytes: 64 * 1024 } });
          if (chunk.text) runtime.out(chunk.text);
          const moved = chunk.nextOffset !== offset;
          offset = chunk.nextOffset;
          if (!options.follow) break;
          if (!moved) await sleep(500, undefined, { signal: controller.signal }).catch(() => undefined);
          if (controller.signal.aborted) break;
        }
      } finally {
        process.removeListener("SIGINT", stop);
      }
    });
}
