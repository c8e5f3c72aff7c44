import { Kysely, PostgresDialect, sql } from "kysely";
import type pg from "pg";
import { liveSchema, maskinImagesProjection, maskinVmsProjection } from "../../projections/index.ts";
import type { MaskinImageTables, MaskinImageVersionRow } from "../../projections/maskin/images.ts";
import type { MaskinDiskImageReferenceRow, MaskinDiskImageRow, MaskinHypervisorRow, MaskinVmRow, MaskinVmTables } from "../../projections/maskin/vms.ts";
import type { Resources } from "../../domain/maskin/vm/index.ts";
import { isPlatformAdmin, visibleProjects, visibleTenants } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { canReadInventory } from "./inventory.ts";

/**
 * The API's way into the VM infrastructure read models: hypervisors and disk
 * images (schema `maskin_vms`), image versions (schema `maskin_images`), and
 * the VM counts behind project quota usage.
 *
 * Who sees what:
 * - hypervisors and images are the platform's, like the inventory: platform
 *   readers (platform-admins and platform auditors) only;
 * - a disk image is seen by platform readers, and by a tenant caller when a
 *   VM of a project it can see references the disk image now (a disk image
 *   is created for a tenant's VM and named by it; one nobody of the tenant
 *   references any more is the platform's to clean up). The references such
 *   a caller sees are only those of its own projects' VMs.
 */
export function canReadVmInfra(actor: AuthenticatedActor): boolean {
  return canReadInventory(actor);
}

/** Project VM usage counted against quota: the project's VMs not deleted. */
export interface VmUsage {
  readonly vms: number;
  readonly vcpus: number;
  readonly memoryMiB: number;
}
export const NO_VM_USAGE: VmUsage = Object.freeze({ vms: 0, vcpus: 0, memoryMiB: 0 });

/** Tenant/project pairs a caller may see VMs of: "all", or a list (empty projects list: all of that tenant's). */
export type VmVisibility = "all" | ReadonlyArray<{ tenantId: string; projectIds: "all" | readonly string[] }>;

export function vmVisibility(actor: AuthenticatedActor): VmVisibility {
  const tenants = visibleTenants(actor);
  if (tenants === "all") return "all";
  return tenants.map((tenantId) => ({ tenantId, projectIds: visibleProjects(actor, tenantId) }));
}

export interface DiskImageFilter {
  readonly datacenter?: string;
  readonly visibility: VmVisibility;
  readonly after?: { datacenter: string; name: string };
  readonly limit: number;
}

const MISSING_TABLE = "42P01";
async function orEmpty<T>(query: Promise<T>, empty: T): Promise<T> {
  try {
    return await query;
  } catch (error) {
    if ((error as { code?: string }).code === MISSING_TABLE) return empty; // the projection does not run here
    throw error;
  }
}

export class VmInfraReadModel {
  private readonly vmsDb: Kysely<MaskinVmTables>;
  private readonly imagesDb: Kysely<MaskinImageTables>;

  constructor(pool: pg.Pool) {
    const dialect = new PostgresDialect({ pool });
    this.vmsDb = new Kysely<MaskinVmTables>({ dialect }).withSchema(liveSchema(maskinVmsProjection));
    this.imagesDb = new Kysely<MaskinImageTables>({ dialect }).withSchema(liveSchema(maskinImagesProjection));
  }

  // ---- hypervisors ----

  listHypervisors(filter: { datacenter?: string; after?: string; limit: number }): Promise<MaskinHypervisorRow[]> {
    let query = this.vmsDb.selectFrom("hypervisors").selectAll();
    if (filter.datacenter !== undefined) query = query.where("datacenter", "=", filter.datacenter);
    if (filter.after !== undefined) query = query.where("host_id", ">", filter.after);
    return orEmpty(query.orderBy("host_id").limit(filter.limit).execute(), []);
  }

  getHypervisor(hostId: string): Promise<MaskinHypervisorRow | undefined> {
    return orEmpty(this.vmsDb.selectFrom("hypervisors").selectAll().where("host_id", "=", hostId).executeTakeFirst(), undefined);
  }

  // ---- images ----

  /** Image names, ordered, after `after`. */
  async listImageNames(filter: { after?: string; limit: number }): Promise<string[]> {
    let query = this.imagesDb.selectFrom("image_versions").select("name").distinct();
    if (filter.after !== undefined) query = query.where("name", ">", filter.after);
    return (await orEmpty(query.orderBy("name").limit(filter.limit).execute(), [])).map((r) => r.name);
  }

  /** The versions of these images, by name then registration order. */
  listImageVersions(names: readonly string[]): Promise<MaskinImageVersionRow[]> {
    if (names.length === 0) return Promise.resolve([]);
    return orEmpty(this.imagesDb.selectFrom("image_versions").selectAll().where("name", "in", [...names]).orderBy("name").orderBy("stream_position").execute(), []);
  }

  getImageVersion(name: string, version: string): Promise<MaskinImageVersionRow | undefined> {
    return orEmpty(this.imagesDb.selectFrom("image_versions").selectAll().where("name", "=", name).where("version", "=", version).executeTakeFirst(), undefined);
  }

  // ---- disk images ----

  /** Disk images the visibility allows, ordered by (datacenter, name). */
  listDiskImages(filter: DiskImageFilter): Promise<MaskinDiskImageRow[]> {
    let query = this.vmsDb.selectFrom("disk_images").selectAll();
    if (filter.datacenter !== undefined) query = query.where("datacenter", "=", filter.datacenter);
    if (filter.after !== undefined) {
      const after = filter.after;
      query = query.where((eb) => eb.or([eb("datacenter", ">", after.datacenter), eb.and([eb("datacenter", "=", after.datacenter), eb("name", ">", after.name)])]));
    }
    if (filter.visibility !== "all") {
      const visible = filter.visibility;
      if (visible.length === 0) return Promise.resolve([]);
      query = query.where((eb) =>
        eb.exists(
          eb
            .selectFrom("disk_image_references as r")
            .innerJoin("vms as v", "v.vm_id", "r.vm_id")
            .select(sql.lit(1).as("one"))
            .whereRef("r.datacenter", "=", "disk_images.datacenter")
            .whereRef("r.name", "=", "disk_images.name")
            .where((inner) => inner.or(visible.map((t) => (t.projectIds === "all" ? inner("v.tenant_id", "=", t.tenantId) : t.projectIds.length === 0 ? inner.val(false) : inner.and([inner("v.tenant_id", "=", t.tenantId), inner("v.project_id", "in", [...t.projectIds])]))))),
        ),
      );
    }
    return orEmpty(query.orderBy("datacenter").orderBy("name").limit(filter.limit).execute(), []);
  }

  getDiskImage(datacenter: string, name: string): Promise<MaskinDiskImageRow | undefined> {
    return orEmpty(this.vmsDb.selectFrom("disk_images").selectAll().where("datacenter", "=", datacenter).where("name", "=", name).executeTakeFirst(), undefined);
  }

  /** The live references of a disk image with the referencing VM's name and scope (null when the VM row is missing). */
  diskImageReferences(datacenter: string, name: string): Promise<DiskImageReferenceRow[]> {
    return orEmpty(
      this.vmsDb
        .selectFrom("disk_image_references as r")
        .leftJoin("vms as v", "v.vm_id", "r.vm_id")
        .selectAll("r")
        .select(["v.name as vm_name", "v.tenant_id", "v.project_id", "v.lifecycle"])
        .where("r.datacenter", "=", datacenter)
        .where("r.name", "=", name)
        .orderBy("r.event_position")
        .execute(),
      [],
    );
  }

  // ---- VMs (what GraphQL and quota usage need of them) ----

  getVm(vmId: string): Promise<MaskinVmRow | undefined> {
    return orEmpty(this.vmsDb.selectFrom("vms").selectAll().where("vm_id", "=", vmId).executeTakeFirst(), undefined);
  }

  listVms(filter: { visibility: VmVisibility; tenantId?: string; projectId?: string; hostId?: string; includeDeleted?: boolean; after?: string; limit: number }): Promise<MaskinVmRow[]> {
    let query = this.vmsDb.selectFrom("vms").selectAll();
    if (filter.tenantId !== undefined) query = query.where("tenant_id", "=", filter.tenantId);
    if (filter.projectId !== undefined) query = query.where("project_id", "=", filter.projectId);
    if (filter.hostId !== undefined) query = query.where("host_id", "=", filter.hostId);
    if (!filter.includeDeleted) query = query.where("lifecycle", "!=", "deleted");
    if (filter.after !== undefined) query = query.where("vm_id", ">", filter.after);
    if (filter.visibility !== "all") {
      const visible = filter.visibility;
      if (visible.length === 0) return Promise.resolve([]);
      query = query.where((eb) =>
        eb.or(visible.map((t) => (t.projectIds === "all" ? eb("tenant_id", "=", t.tenantId) : t.projectIds.length === 0 ? eb.val(false) : eb.and([eb("tenant_id", "=", t.tenantId), eb("project_id", "in", [...t.projectIds])])))),
      );
    }
    return orEmpty(query.orderBy("vm_id").limit(filter.limit).execute(), []);
  }

  /** Quota usage of projects: their VMs not deleted (vms, vcpus, memoryMiB); projects without VMs are absent. */
  async vmUsage(projects: ReadonlyArray<readonly [tenantId: string, projectId: string]>): Promise<Map<string, VmUsage>> {
    if (projects.length === 0) return new Map();
    const rows = await orEmpty(
      this.vmsDb
        .selectFrom("vms")
        .select([
          "tenant_id",
          "project_id",
          (eb) => eb.fn.countAll<string>().as("vms"),
          sql<string>`coalesce(sum((resources->>'vcpus')::bigint), 0)`.as("vcpus"),
          sql<string>`coalesce(sum((resources->>'memoryMiB')::bigint), 0)`.as("memory_mib"),
        ])
        .where("lifecycle", "!=", "deleted")
        .where((eb) => eb.or(projects.map(([t, p]) => eb.and([eb("tenant_id", "=", t), eb("project_id", "=", p)]))))
        .groupBy(["tenant_id", "project_id"])
        .execute(),
      [],
    );
    return new Map(rows.map((r) => [usageKey(r.tenant_id, r.project_id), { vms: Number(r.vms), vcpus: Number(r.vcpus), memoryMiB: Number(r.memory_mib) }]));
  }

  async projectVmUsage(tenantId: string, projectId: string): Promise<VmUsage> {
    return (await this.vmUsage([[tenantId, projectId]])).get(usageKey(tenantId, projectId)) ?? NO_VM_USAGE;
  }
}

export const usageKey = (tenantId: string, projectId: string) => `${tenantId}\u0000${projectId}`;

export type DiskImageReferenceRow = MaskinDiskImageReferenceRow & { vm_name: string | null; tenant_id: string | null; project_id: string | null; lifecycle: string | null };

// ---- views (REST and GraphQL show the same) ----

const iso = (value: Date | string | null) => (value === null ? null : (value instanceof Date ? value : new Date(value)).toISOString());

function subtract(a: Resources, b: Resources): Resources {
  return { vcpus: a.vcpus - b.vcpus, memoryMiB: a.memoryMiB - b.memoryMiB, diskGiB: a.diskGiB - b.diskGiB };
}

export interface HypervisorView {
  readonly hostId: string;
  readonly name: string;
  readonly datacenter: string;
  readonly capacity: Resources;
  readonly overcommit: { cpu: number; memory: number; disk: number };
  readonly allocatable: Resources;
  readonly used: Resources;
  /** Allocatable minus used; negative when capacity was lowered below what is reserved. */
  readonly free: Resources;
  readonly vmCount: number;
  readonly reservations: Array<{ vmId: string; resources: Resources; groups: string[]; taskId: string; at: string }>;
  readonly cordoned: boolean;
  readonly cordonReason: string | null;
  readonly drainTaskId: string | null;
  /** QEMU processes on the host with no VM record, as last observed (empty: none). */
  readonly orphans: string[];
  readonly updatedAt: string;
  readonly version: number;
}

export function hypervisorView(row: MaskinHypervisorRow): HypervisorView {
  const orphans = (row as { orphans?: unknown }).orphans;
  return {
    hostId: row.host_id,
    name: row.name,
    datacenter: row.datacenter,
    capacity: row.capacity,
    overcommit: row.overcommit,
    allocatable: row.allocatable,
    used: row.used,
    free: subtract(row.allocatable, row.used),
    vmCount: row.vm_count,
    reservations: row.reservations.map((r) => ({ vmId: r.vmId, resources: r.resources, groups: [...r.groups], taskId: r.taskId, at: r.at })),
    cordoned: row.cordoned,
    cordonReason: row.cordon_reason,
    drainTaskId: row.drain_task_id,
    orphans: Array.isArray(orphans) ? orphans.map(String) : [],
    updatedAt: iso(row.updated_at)!,
    version: row.version,
  };
}

export interface ImageVersionView {
  readonly version: string;
  readonly digest: string;
  readonly format: string;
  readonly source: { kind: "url"; url: string } | { kind: "file"; path: string };
  readonly osFamily: string;
  readonly guestInit: string;
  readonly boot: { kernel: { source: unknown; digest: string }; initrd: { source: unknown; digest: string }; cmdline: string } | null;
  readonly registeredAt: string;
}

export interface ImageView {
  readonly name: string;
  /** In registration order. */
  readonly versions: ImageVersionView[];
}

export function imageVersionView(row: MaskinImageVersionRow): ImageVersionView {
  const c = row.content;
  return { version: row.version, digest: c.digest, format: c.format, source: c.source, osFamily: c.osFamily, guestInit: c.guestInit, boot: c.boot, registeredAt: iso(row.registered_at)! };
}

/** Groups version rows (ordered by name) into images. */
export function imageViews(rows: readonly MaskinImageVersionRow[]): ImageView[] {
  const images: Array<{ name: string; versions: ImageVersionView[] }> = [];
  for (const row of rows) {
    const last = images.at(-1);
    if (last?.name === row.name) last.versions.push(imageVersionView(row));
    else images.push({ name: row.name, versions: [imageVersionView(row)] });
  }
  return images;
}

/** A row exists only from creation on, so never `absent`. */
export type StoredDiskImageStatus = "active" | "terminating" | "deleted";
export const storedStatus = (row: MaskinDiskImageRow): StoredDiskImageStatus => (row.status === "absent" ? "active" : row.status);

export interface DiskImageView {
  readonly datacenter: string;
  readonly name: string;
  readonly status: StoredDiskImageStatus;
  readonly generation: number;
  readonly template: { image: { name: string; version: string }; sizeGiB: number; storageClass: string };
  readonly references: number;
  readonly deletionRequestedAt: string | null;
  readonly deletedAt: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export function diskImageView(row: MaskinDiskImageRow): DiskImageView {
  return {
    datacenter: row.datacenter,
    name: row.name,
    status: storedStatus(row),
    generation: row.generation,
    template: row.template,
    references: row.references,
    deletionRequestedAt: iso(row.deletion_requested_at),
    deletedAt: iso(row.deleted_at),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

export interface DiskImageReferenceView {
  readonly vmId: string;
  readonly vmName: string | null;
  readonly tenantId: string | null;
  readonly projectId: string | null;
  readonly mode: string;
  readonly warnings: Array<{ field: string; existing: string; requested: string }>;
  /** The `DiskImageReferenced` event that added the reference. */
  readonly addedBy: { readonly eventId: string; readonly position: string; readonly taskId: string; readonly at: string };
}

export function diskImageReferenceView(row: DiskImageReferenceRow): DiskImageReferenceView {
  return {
    vmId: row.vm_id,
    vmName: row.vm_name,
    tenantId: row.tenant_id,
    projectId: row.project_id,
    mode: row.mode,
    warnings: row.warnings,
    addedBy: { eventId: row.event_id, position: row.event_position, taskId: row.task_id, at: iso(row.added_at)! },
  };
}

/** Which of a disk image's references the caller may see: all for platform readers, else those of VMs in its visible projects. */
export function visibleReferences(actor: AuthenticatedActor, rows: readonly DiskImageReferenceRow[]): DiskImageReferenceRow[] {
  if (isPlatformAdmin(actor) || canReadVmInfra(actor)) return [...rows];
  return rows.filter((r) => {
    if (r.tenant_id === null || r.project_id === null) return false;
    const projects = visibleProjects(actor, r.tenant_id);
    const tenants = visibleTenants(actor);
    return (tenants === "all" || tenants.includes(r.tenant_id)) && (projects === "all" || projects.includes(r.project_id));
  });
}
