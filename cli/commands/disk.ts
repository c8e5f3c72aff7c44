import type { Command } from "commander";
import { randomUUID } from "node:crypto";
import { usageError } from "../core/errors.ts";
import type { ApiClient } from "../core/http.ts";
import { render, type Column } from "../core/output.ts";
import { listAll, notFound, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";

/**
 * dvce disk list|delete|why-not-deleted: disk images (per datacenter, shared
 * by the VMs that reference them). Platform readers see all; a tenant sees
 * those its projects' VMs reference. Delete (platform-admin) is synchronous:
 * a referenced disk image becomes terminating (exit 0, the VMs holding it
 * are printed) and is removed when its last reference goes; `--wait` is
 * accepted and changes nothing. why-not-deleted prints the referencing VMs
 * and the event that added each reference.
 */

const DISK_COLUMNS: Column<Resource>[] = [
  { header: "name", value: (r) => r.name },
  { header: "datacenter", value: (r) => r.datacenter },
  { header: "status", value: (r) => r.status },
  { header: "refs", value: (r) => r.references },
  { header: "image", value: (r) => {
    const image = ((r.template ?? {}) as { image?: { name?: string; version?: string } }).image;
    return image ? `${image.name ?? "?"}:${image.version ?? "?"}` : "";
  } },
  { header: "sizeGiB", value: (r) => (r.template as { sizeGiB?: number } | undefined)?.sizeGiB },
  { header: "generation", value: (r) => r.generation },
];
const REFERENCE_COLUMNS: Column<Resource>[] = [
  { header: "vm", value: (r) => r.vmName ?? r.vmId },
  { header: "vm id", value: (r) => r.vmId },
  { header: "project", value: (r) => r.projectId },
  { header: "mode", value: (r) => r.mode },
  { header: "added", value: (r) => (r.addedBy as Resource | undefined)?.at },
  { header: "by event", value: (r) => (r.addedBy as Resource | undefined)?.eventId },
];

/** The disk image's datacenter: --datacenter, else the only datacenter where the caller sees one by that name. */
async function datacenterOf(client: ApiClient, name: string, datacenter?: string): Promise<string> {
  if (datacenter !== undefined) return datacenter;
  const found = (await listAll(client, "/v1/disk-images")).filter((d) => d.name === name);
  if (found.length === 1) return String(found[0]!.datacenter);
  if (found.length === 0) throw notFound("disk image", name);
  throw usageError(`disk image ${JSON.stringify(name)} exists in ${found.map((d) => String(d.datacenter)).join(", ")}`, "give --datacenter");
}

const diskPath = (datacenter: string, name: string, action?: string) => `/v1/disk-images/${encodeURIComponent(datacenter)}/${encodeURIComponent(name)}${action ? `/${action}` : ""}`;

export function registerDiskCommands(program: Command, runtime: Runtime): void {
  const disk = program.command("disk").summary("disk images: list, delete, why-not-deleted").description("VM disk images, shared by reference and removed with their last reference");
  const withName = (command: Command) => command.argument("<name>", "disk image name").option("--datacenter <name>", "its datacenter (default: the only one with that name)");

  disk
    .command("list")
    .description("list disk images")
    .option("--datacenter <name>", "only this datacenter")
    .action(async (options: { datacenter?: string }, command: Command) => {
      const client = await runtime.client(command);
      const items = await listAll(client, "/v1/disk-images", { datacenter: options.datacenter });
      render(runtime.io, runtime.format(command), items, { rows: items, columns: DISK_COLUMNS, empty: "No disk images." });
    });

  withName(disk.command("delete").description("delete it now, or mark it terminating while VMs reference it (platform-admin)"))
    .option("--wait", "accepted for symmetry: the call is synchronous")
    .action(async (name: string, options: { datacenter?: string }, command: Command) => {
      const client = await runtime.client(command);
      const datacenter = await datacenterOf(client, name, options.datacenter);
      const response = await client.request<Resource>("DELETE", diskPath(datacenter, name), { headers: { "idempotency-key": randomUUID() } });
      const result = response.body;
      const holders = (result.referencedBy ?? []) as string[];
      if (runtime.format(command) === "json") return render(runtime.io, "json", result, { rows: [], columns: [] });
      runtime.out(result.status === "deleted" ? `disk image ${name} deleted\n` : `disk image ${name} is terminating: removed when ${holders.length} VM(s) let go of it (${holders.join(", ")})\n`);
    });

  withName(disk.command("why-not-deleted").description("the VMs that hold it and the events that added their references")).action(
    async (name: string, options: { datacenter?: string }, command: Command) => {
      const client = await runtime.client(command);
      const datacenter = await datacenterOf(client, name, options.datacenter);
      const why = await client.get<Resource>(diskPath(datacenter, name, "why-not-deleted"));
      const references = (why.references ?? []) as Resource[];
      render(runtime.io, runtime.format(command), why, { rows: references, columns: REFERENCE_COLUMNS, empty: `disk image ${name} (${String(why.status)}): no VM references it.` });
    },
  );
}
