import type { Command } from "commander";
import { randomUUID } from "node:crypto";
import { usageError } from "../core/errors.ts";
import type { ApiClient } from "../core/http.ts";
import { render, type Column } from "../core/output.ts";
import { listAll, notFound, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";

/**
 * dvce hypervisor list|get|cordon|uncordon|drain (platform readers read,
 * platform-admins act). Every call is synchronous: cordon, uncordon and
 * drain are decided on the hypervisor's own stream and answered at once,
 * so `--wait` is accepted and changes nothing. Drain cordons the hypervisor
 * and prints the VMs that must move (it does not move them).
 */

type Amounts = { vcpus?: number; memoryMiB?: number; diskGiB?: number };
const amounts = (value: unknown): Amounts => (value ?? {}) as Amounts;
const triple = (value: unknown) => {
  const a = amounts(value);
  return `${a.vcpus ?? "-"}/${a.memoryMiB ?? "-"}/${a.diskGiB ?? "-"}`;
};

export const HYPERVISOR_COLUMNS: Column<Resource>[] = [
  { header: "name", value: (r) => r.name },
  { header: "datacenter", value: (r) => r.datacenter },
  { header: "vms", value: (r) => r.vmCount },
  { header: "allocatable (cpu/MiB/GiB)", value: (r) => triple(r.allocatable) },
  { header: "used", value: (r) => triple(r.used) },
  { header: "free", value: (r) => triple(r.free) },
  { header: "cordoned", value: (r) => (r.cordoned ? `yes: ${String(r.cordonReason ?? "")}` : "no") },
  { header: "orphans", value: (r) => (Array.isArray(r.orphans) && r.orphans.length > 0 ? r.orphans.join(",") : "") },
  { header: "id", value: (r) => r.hostId },
];
const RESERVATION_COLUMNS: Column<Resource>[] = [
  { header: "vm", value: (r) => r.vmId },
  { header: "vcpus", value: (r) => amounts(r.resources).vcpus },
  { header: "memoryMiB", value: (r) => amounts(r.resources).memoryMiB },
  { header: "diskGiB", value: (r) => amounts(r.resources).diskGiB },
  { header: "groups", value: (r) => (Array.isArray(r.groups) ? r.groups.join(",") : "") },
];

/** A hypervisor by host id, or by name (looked up in the list; --datacenter when a name is in several). */
export async function resolveHypervisor(client: ApiClient, ref: string, datacenter?: string): Promise<Resource> {
  const all = await listAll(client, "/v1/hypervisors", { datacenter });
  const byId = all.find((h) => h.hostId === ref);
  if (byId) return byId;
  const named = all.filter((h) => h.name === ref);
  if (named.length === 1) return named[0]!;
  if (named.length > 1) throw usageError(`${named.length} hypervisors are named ${JSON.stringify(ref)}`, "give --datacenter or the host id");
  throw notFound("hypervisor", ref);
}

const path = (hostId: unknown, action?: string) => `/v1/hypervisors/${encodeURIComponent(String(hostId))}${action ? `/${action}` : ""}`;

export function registerHypervisorCommands(program: Command, runtime: Runtime): void {
  const hypervisor = program.command("hypervisor").summary("hypervisors: capacity, cordon, drain").description("hosts with role hypervisor (from the inventory) and their VM capacity");
  const withRef = (command: Command) =>
    command.argument("<hypervisor>", "host id or name").option("--datacenter <name>", "the hypervisor's datacenter (when the name is ambiguous)");
  const withWait = (command: Command) => command.option("--wait", "accepted for symmetry: the call is synchronous, its answer is final");

  hypervisor
    .command("list")
    .description("list hypervisors with allocatable, used and free capacity")
    .option("--datacenter <name>", "only this datacenter")
    .action(async (options: { datacenter?: string }, command: Command) => {
      const client = await runtime.client(command);
      const items = await listAll(client, "/v1/hypervisors", { datacenter: options.datacenter });
      render(runtime.io, runtime.format(command), items, { rows: items, columns: HYPERVISOR_COLUMNS, empty: "No hypervisors." });
    });

  withRef(hypervisor.command("get").description("one hypervisor: capacity, overcommit, allocatable, used, free, cordon, orphans and its reservations")).action(
    async (ref: string, options: { datacenter?: string }, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveHypervisor(client, ref, options.datacenter);
      const shown = await client.get<Resource>(path(found.hostId));
      if (runtime.format(command) === "json") return render(runtime.io, "json", shown, { rows: [], columns: [] });
      render(runtime.io, "table", shown, { rows: [shown], columns: HYPERVISOR_COLUMNS });
      const reservations = (shown.reservations ?? []) as Resource[];
      if (reservations.length > 0) {
        runtime.out("\n");
        render(runtime.io, "table", reservations, { rows: reservations, columns: RESERVATION_COLUMNS });
      }
    },
  );

  withWait(withRef(hypervisor.command("cordon").description("no new VMs on this hypervisor")).requiredOption("--reason <text>", "why (shown with the hypervisor)")).action(
    async (ref: string, options: { datacenter?: string; reason: string }, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveHypervisor(client, ref, options.datacenter);
      const response = await client.request<Resource>("POST", path(found.hostId, "cordon"), { body: { reason: options.reason }, headers: { "idempotency-key": randomUUID() } });
      render(runtime.io, runtime.format(command), response.body, { rows: [response.body], columns: HYPERVISOR_COLUMNS });
    },
  );

  withWait(withRef(hypervisor.command("uncordon").description("place VMs on this hypervisor again (ends a drain too)"))).action(
    async (ref: string, options: { datacenter?: string }, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveHypervisor(client, ref, options.datacenter);
      const response = await client.request<Resource>("POST", path(found.hostId, "uncordon"), { body: {}, headers: { "idempotency-key": randomUUID() } });
      render(runtime.io, runtime.format(command), response.body, { rows: [response.body], columns: HYPERVISOR_COLUMNS });
    },
  );

  withWait(withRef(hypervisor.command("drain").description("cordon it and print the VMs that must move")).requiredOption("--reason <text>", "why")).action(
    async (ref: string, options: { datacenter?: string; reason: string }, command: Command) => {
      const client = await runtime.client(command);
      const found = await resolveHypervisor(client, ref, options.datacenter);
      const response = await client.request<Resource>("POST", path(found.hostId, "drain"), { body: { reason: options.reason }, headers: { "idempotency-key": randomUUID() } });
      const report = response.body;
      const vms = (report.vms ?? []) as Resource[];
      render(runtime.io, runtime.format(command), report, { rows: vms, columns: RESERVATION_COLUMNS, empty: `${String(found.name)} is cordoned; no VM has to move.` });
      if (runtime.format(command) === "table" && vms.length > 0) runtime.err(`${String(found.name)} is cordoned; ${vms.length} VM(s) must move.\n`);
    },
  );
}
