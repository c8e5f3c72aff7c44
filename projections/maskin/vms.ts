import { type ColumnType, type Kysely, type Selectable } from "kysely";
import type { RecordedEvent } from "../../adapters/eventstore/port.ts";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import {
  CAPACITY_EVENT_TYPES,
  capacityDecider,
  capacityEventSchemas,
  DISK_IMAGE_EVENT_TYPES,
  diskImageEventSchemas,
  initialHypervisorState,
  initialVmState,
  MASKIN_DISK_STREAM_PREFIX,
  MASKIN_HV_STREAM_PREFIX,
  MASKIN_VM_STREAM_PREFIX,
  VM_EVENT_TYPES,
  vmDecider,
  vmDrift,
  vmEventSchemas,
  type CapacityEvent,
  type CapacityEventType,
  type DiskImageEvent,
  type DiskImageEventType,
  type DiskImageStatus,
  type DiskTemplate,
  type HypervisorState,
  type Overcommit,
  type Reservation,
  type Resources,
  type TemplateWarning,
  type VmEvent,
  type VmEventType,
  type VmLifecycle,
  type VmNic,
  type VmState,
} from "../../domain/maskin/vm/index.ts";
import { defineProjection } from "../projection.ts";

/**
 * Maskin VM read models (schema `maskin_vms`; its own schema because a
 * projection owns exactly one, and `maskin` is the hosts projection's):
 *
 * - `vms`: one row per VM (stream `maskin-vm-<vmId>`), folded with the VM
 *   aggregate's own evolve (kept in `aggregate`): tenant/project/environment,
 *   `lifecycle`, `desired`, `observed` (+ `observed_at`), `drift` (the
 *   `vmDrift` kind or null), the chosen hypervisor (`host_id`, `hypervisor`),
 *   `placement` — the last placement explanation (`{outcome: "placed",
 *   chosen, rejected}` or `{outcome: "blocked", reason, blocking, rejected}`),
 *   what `dvce vm explain` prints — the disk image, the NICs with their MACs.
 * - `hypervisors`: one row per hypervisor (stream `maskin-hv-<hostId>`):
 *   capacity, overcommit, allocatable, used, the reservations (sorted by VM
 *   id, with their groups), `cordoned` (+ reason), the drain task, and
 *   `orphans` (+ `orphans_at`): the QEMU processes its runtime observer saw
 *   with no VM record (`HypervisorOrphansObserved`).
 * - `disk_images`: one row per disk image (stream
 *   `maskin-disk-<datacenter>-<name>`): status, generation, template,
 *   reference count, deletion; and `disk_image_references`: one row per
 *   live reference with the id and log position of the `DiskImageReferenced`
 *   event that added it (`dvce disk why-not-deleted`).
 * Every row has `version` (position of the last event of its stream: the
 * ETag) and `position` (log position of the last event applied).
 */

type Timestamp = ColumnType<Date, Date, Date>;
type Json<T> = ColumnType<T, string, string>;

export interface VmPlacementExplanation {
  readonly outcome: "placed" | "blocked";
  readonly chosen?: unknown;
  readonly reason?: string;
  readonly blocking?: "soft" | "hard";
  readonly rejected: readonly unknown[];
}

export interface MaskinVmsTable {
  vm_id: string;
  name: string;
  tenant_id: string;
  project_id: string;
  environment_id: string | null;
  datacenter: string;
  resources: Json<Resources>;
  image: Json<{ name: string; version: string } | null>;
  lifecycle: VmLifecycle;
  desired: VmState["desired"];
  observed: "running" | "paused" | "shutdown" | "absent" | null;
  observed_at: Timestamp | null;
  drift: "not_running" | "not_stopped" | "process_after_delete" | null;
  host_id: string | null;
  hypervisor: string | null;
  placement: Json<VmPlacementExplanation | null>;
  disk_name: string;
  disk_mode: string;
  disk_attached: boolean;
  disk_warnings: Json<TemplateWarning[]>;
  nics: Json<VmNic[]>;
  anti_affinity: Json<{ group: string; maxPerHypervisor: number } | null>;
  spread_group: string | null;
  failure_reason: string | null;
  task_id: string;
  aggregate: Json<VmState>;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
  position: string;
}

export interface MaskinHypervisorsTable {
  host_id: string;
  name: string;
  datacenter: string;
  capacity: Json<Resources>;
  overcommit: Json<Overcommit>;
  allocatable: Json<Resources>;
  used: Json<Resources>;
  vm_count: number;
  reservations: Json<Reservation[]>;
  cordoned: boolean;
  cordon_reason: string | null;
  drain_task_id: string | null;
  /** QEMU processes on the host with no VM record, as the hypervisor's observer last saw them (sorted VM ids). */
  orphans: Json<string[]>;
  orphans_at: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
  position: string;
}

export interface MaskinDiskImagesTable {
  datacenter: string;
  name: string;
  status: DiskImageStatus;
  generation: number;
  template: Json<DiskTemplate>;
  references: number;
  created_for_vm_id: string;
  deletion_task_id: string | null;
  deletion_requested_at: Timestamp | null;
  deleted_at: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
  position: string;
}

export interface MaskinDiskImageReferencesTable {
  datacenter: string;
  name: string;
  vm_id: string;
  mode: string;
  warnings: Json<TemplateWarning[]>;
  task_id: string;
  added_at: Timestamp;
  /** The `DiskImageReferenced` event that added the reference. */
  event_id: string;
  event_position: string;
}

export interface MaskinVmTables {
  vms: MaskinVmsTable;
  hypervisors: MaskinHypervisorsTable;
  disk_images: MaskinDiskImagesTable;
  disk_image_references: MaskinDiskImageReferencesTable;
}

export type MaskinVmRow = Selectable<MaskinVmsTable>;
export type MaskinHypervisorRow = Selectable<MaskinHypervisorsTable>;
export type MaskinDiskImageRow = Selectable<MaskinDiskImagesTable>;
export type MaskinDiskImageReferenceRow = Selectable<MaskinDiskImageReferencesTable>;

export const MASKIN_VMS_SCHEMA = "maskin_vms";

export const maskinVmsProjection = defineProjection<MaskinVmTables>({
  name: MASKIN_VMS_SCHEMA,
  version: 2,
  tables: ["vms", "hypervisors", "disk_images", "disk_image_references"],
  eventTypes: [...new Set<string>([...VM_EVENT_TYPES, ...CAPACITY_EVENT_TYPES, ...DISK_IMAGE_EVENT_TYPES])],

  async createTables(db: Kysely<any>, schema: string) {
    const s = db.schema.withSchema(schema);
    await s
      .createTable("vms")
      .addColumn("vm_id", "text", (c) => c.primaryKey())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("tenant_id", "text", (c) => c.notNull())
      .addColumn("project_id", "text", (c) => c.notNull())
      .addColumn("environment_id", "text")
      .addColumn("datacenter", "text", (c) => c.notNull())
      .addColumn("resources", "jsonb", (c) => c.notNull())
      .addColumn("image", "jsonb")
      .addColumn("lifecycle", "text", (c) => c.notNull())
      .addColumn("desired", "text", (c) => c.notNull())
      .addColumn("observed", "text")
      .addColumn("observed_at", "timestamptz")
      .addColumn("drift", "text")
      .addColumn("host_id", "text")
      .addColumn("hypervisor", "text")
      .addColumn("placement", "jsonb")
      .addColumn("disk_name", "text", (c) => c.notNull())
      .addColumn("disk_mode", "text", (c) => c.notNull())
      .addColumn("disk_attached", "boolean", (c) => c.notNull())
      .addColumn("disk_warnings", "jsonb", (c) => c.notNull())
      .addColumn("nics", "jsonb", (c) => c.notNull())
      .addColumn("anti_affinity", "jsonb")
      .addColumn("spread_group", "text")
      .addColumn("failure_reason", "text")
      .addColumn("task_id", "text", (c) => c.notNull())
      .addColumn("aggregate", "jsonb", (c) => c.notNull())
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addColumn("position", "text", (c) => c.notNull())
      .execute();
    await s.createIndex("vms_tenant").on("vms").columns(["tenant_id", "project_id", "vm_id"]).execute();
    await s.createIndex("vms_host").on("vms").columns(["host_id", "vm_id"]).execute();
    await s
      .createTable("hypervisors")
      .addColumn("host_id", "text", (c) => c.primaryKey())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("datacenter", "text", (c) => c.notNull())
      .addColumn("capacity", "jsonb", (c) => c.notNull())
      .addColumn("overcommit", "jsonb", (c) => c.notNull())
      .addColumn("allocatable", "jsonb", (c) => c.notNull())
      .addColumn("used", "jsonb", (c) => c.notNull())
      .addColumn("vm_count", "integer", (c) => c.notNull())
      .addColumn("reservations", "jsonb", (c) => c.notNull())
      .addColumn("cordoned", "boolean", (c) => c.notNull())
      .addColumn("cordon_reason", "text")
      .addColumn("drain_task_id", "text")
      .addColumn("orphans", "jsonb", (c) => c.notNull())
      .addColumn("orphans_at", "timestamptz")
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addColumn("position", "text", (c) => c.notNull())
      .execute();
    await s.createIndex("hypervisors_datacenter").on("hypervisors").columns(["datacenter", "name", "host_id"]).execute();
    await s
      .createTable("disk_images")
      .addColumn("datacenter", "text", (c) => c.notNull())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("generation", "integer", (c) => c.notNull())
      .addColumn("template", "jsonb", (c) => c.notNull())
      .addColumn("references", "integer", (c) => c.notNull())
      .addColumn("created_for_vm_id", "text", (c) => c.notNull())
      .addColumn("deletion_task_id", "text")
      .addColumn("deletion_requested_at", "timestamptz")
      .addColumn("deleted_at", "timestamptz")
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addColumn("position", "text", (c) => c.notNull())
      .addPrimaryKeyConstraint("disk_images_pk", ["datacenter", "name"])
      .execute();
    await s
      .createTable("disk_image_references")
      .addColumn("datacenter", "text", (c) => c.notNull())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("vm_id", "text", (c) => c.notNull())
      .addColumn("mode", "text", (c) => c.notNull())
      .addColumn("warnings", "jsonb", (c) => c.notNull())
      .addColumn("task_id", "text", (c) => c.notNull())
      .addColumn("added_at", "timestamptz", (c) => c.notNull())
      .addColumn("event_id", "text", (c) => c.notNull())
      .addColumn("event_position", "text", (c) => c.notNull())
      .addPrimaryKeyConstraint("disk_image_references_pk", ["datacenter", "name", "vm_id"])
      .execute();
    await s.createIndex("disk_image_references_vm").on("disk_image_references").columns(["vm_id"]).execute();
  },

  async handle(db, event) {
    if (event.streamId.startsWith(MASKIN_VM_STREAM_PREFIX)) await applyVm(db, event);
    else if (event.streamId.startsWith(MASKIN_HV_STREAM_PREFIX)) await applyCapacity(db, event);
    else if (event.streamId.startsWith(MASKIN_DISK_STREAM_PREFIX)) await applyDisk(db, event);
  },
});

function date(iso: string | null | undefined): Date | null {
  return iso ? new Date(iso) : null;
}

// ---- VMs ----

const VM_TYPES = new Set<string>(VM_EVENT_TYPES);

async function applyVm(db: Kysely<MaskinVmTables>, r: RecordedEvent): Promise<void> {
  if (!VM_TYPES.has(r.type)) return;
  const event = { type: r.type, data: vmEventSchemas[r.type as VmEventType].schema.parse(r.data) } as VmEvent;
  const row = await db.selectFrom("vms").select(["aggregate", "placement"]).where("vm_id", "=", event.data.vmId).executeTakeFirst();
  const before: VmState = row ? row.aggregate : initialVmState;
  const after = vmDecider.evolve(before, event);
  const vm = after.vm;
  if (!vm || !after.lifecycle) return;
  let placement: VmPlacementExplanation | null = row?.placement ?? null;
  if (event.type === "VmPlacementChosen") placement = { outcome: "placed", chosen: event.data.chosen, rejected: event.data.rejected };
  if (event.type === "VmPlacementBlocked") {
    placement = { outcome: "blocked", reason: event.data.reason, blocking: event.data.blocking, rejected: event.data.rejected };
  }
  const values = {
    vm_id: vm.vmId,
    name: vm.name,
    tenant_id: vm.tenantId,
    project_id: vm.projectId,
    environment_id: vm.environmentId,
    datacenter: vm.datacenter,
    resources: JSON.stringify(vm.resources),
    image: JSON.stringify(vm.image),
    lifecycle: after.lifecycle,
    desired: after.desired,
    observed: after.observed?.state ?? null,
    observed_at: date(after.observed?.at),
    drift: vmDrift(after)?.kind ?? null,
    host_id: after.placement?.chosen.hostId ?? null,
    hypervisor: after.placement?.chosen.hypervisor ?? null,
    placement: JSON.stringify(placement),
    disk_name: vm.disk.name,
    disk_mode: vm.disk.mode,
    disk_attached: after.disk !== null,
    disk_warnings: JSON.stringify(after.disk?.warnings ?? []),
    nics: JSON.stringify(vm.nics),
    anti_affinity: JSON.stringify(vm.antiAffinity),
    spread_group: vm.spreadGroup,
    failure_reason: after.failure,
    task_id: "taskId" in event.data ? event.data.taskId : vm.taskId,
    aggregate: JSON.stringify(after),
    created_at: r.occurredAt,
    updated_at: r.occurredAt,
    version: r.streamPosition,
    position: formatPosition(r),
  };
  if (row) {
    const { vm_id: _id, created_at: _c, ...changes } = values;
    await db.updateTable("vms").set(changes).where("vm_id", "=", vm.vmId).execute();
  } else {
    await db.insertInto("vms").values(values).execute();
  }
}

// ---- hypervisors ----

const CAPACITY_TYPES = new Set<string>(CAPACITY_EVENT_TYPES);

/** The aggregate's state from a row (reservations are kept as an array sorted by VM id). */
function hypervisorStateOf(row: Pick<MaskinHypervisorRow, "host_id" | "name" | "datacenter" | "capacity" | "overcommit" | "allocatable" | "used" | "reservations" | "cordoned" | "cordon_reason" | "drain_task_id" | "orphans" | "orphans_at">, cordonAt: string, drainAt: string): HypervisorState {
  return {
    hostId: row.host_id,
    name: row.name,
    datacenter: row.datacenter,
    capacity: row.capacity,
    overcommit: row.overcommit,
    allocatable: row.allocatable,
    used: row.used,
    reservations: new Map(row.reservations.map((r) => [r.vmId, r])),
    cordon: row.cordoned ? { reason: row.cordon_reason ?? "", at: cordonAt } : null,
    drain: row.drain_task_id ? { taskId: row.drain_task_id, at: drainAt } : null,
    orphans: row.orphans_at ? { vmIds: row.orphans, at: row.orphans_at.toISOString() } : null,
  };
}

async function applyCapacity(db: Kysely<MaskinVmTables>, r: RecordedEvent): Promise<void> {
  if (!CAPACITY_TYPES.has(r.type)) return;
  const event = { type: r.type, data: capacityEventSchemas[r.type as CapacityEventType].schema.parse(r.data) } as CapacityEvent;
  const hostId = event.data.hostId;
  const row = await db.selectFrom("hypervisors").selectAll().where("host_id", "=", hostId).executeTakeFirst();
  const before = row ? hypervisorStateOf(row, "", "") : initialHypervisorState;
  const after = capacityDecider.evolve(before, event);
  if (after.hostId === null) return;
  const reservations = [...after.reservations.values()].sort((a, b) => (a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0));
  const values = {
    host_id: after.hostId,
    name: after.name,
    datacenter: after.datacenter,
    capacity: JSON.stringify(after.capacity),
    overcommit: JSON.stringify(after.overcommit),
    allocatable: JSON.stringify(after.allocatable),
    used: JSON.stringify(after.used),
    vm_count: reservations.length,
    reservations: JSON.stringify(reservations.map((x) => ({ vmId: x.vmId, resources: x.resources, groups: x.groups, taskId: x.taskId, at: x.at }))),
    cordoned: after.cordon !== null,
    cordon_reason: after.cordon?.reason ?? null,
    drain_task_id: after.drain?.taskId ?? null,
    orphans: JSON.stringify(after.orphans?.vmIds ?? []),
    orphans_at: date(after.orphans?.at),
    created_at: r.occurredAt,
    updated_at: r.occurredAt,
    version: r.streamPosition,
    position: formatPosition(r),
  };
  if (row) {
    const { host_id: _id, created_at: _c, ...changes } = values;
    await db.updateTable("hypervisors").set(changes).where("host_id", "=", hostId).execute();
  } else {
    await db.insertInto("hypervisors").values(values).execute();
  }
}

// ---- disk images ----

const DISK_TYPES = new Set<string>(DISK_IMAGE_EVENT_TYPES);

async function applyDisk(db: Kysely<MaskinVmTables>, r: RecordedEvent): Promise<void> {
  if (!DISK_TYPES.has(r.type)) return;
  const event = { type: r.type, data: diskImageEventSchemas[r.type as DiskImageEventType].schema.parse(r.data) } as DiskImageEvent;
  const { datacenter, name } = event.data;
  const position = formatPosition(r);
  const touch = { updated_at: r.occurredAt, version: r.streamPosition, position };
  const disk = db.updateTable("disk_images").where("datacenter", "=", datacenter).where("name", "=", name);
  const refs = (vmId?: string) => {
    let q = db.deleteFrom("disk_image_references").where("datacenter", "=", datacenter).where("name", "=", name);
    if (vmId !== undefined) q = q.where("vm_id", "=", vmId);
    return q;
  };
  switch (event.type) {
    case "DiskImageCreated": {
      const d = event.data;
      const values = {
        datacenter,
        name,
        status: "active" as const,
        generation: d.generation,
        template: JSON.stringify(d.template),
        references: 0,
        created_for_vm_id: d.createdForVmId,
        deletion_task_id: null,
        deletion_requested_at: null,
        deleted_at: null,
        created_at: r.occurredAt,
        ...touch,
      };
      // A name deleted before comes back as a new generation.
      const { datacenter: _d, name: _n, ...changes } = values;
      await db.insertInto("disk_images").values(values).onConflict((oc) => oc.columns(["datacenter", "name"]).doUpdateSet(changes)).execute();
      await refs().execute();
      return;
    }
    case "DiskImageReferenced": {
      const d = event.data;
      await db
        .insertInto("disk_image_references")
        .values({
          datacenter,
          name,
          vm_id: d.vmId,
          mode: d.mode,
          warnings: JSON.stringify(d.warnings),
          task_id: d.taskId,
          added_at: new Date(d.at),
          event_id: r.id,
          event_position: position,
        })
        .execute();
      await disk.set({ references: d.references, ...touch }).execute();
      return;
    }
    case "DiskImageReferenceReleased":
      await refs(event.data.vmId).execute();
      await disk.set({ references: event.data.references, ...touch }).execute();
      return;
    case "DiskImageDeletionRequested":
      await disk.set({ status: "terminating", deletion_task_id: event.data.taskId, deletion_requested_at: new Date(event.data.at), ...touch }).execute();
      return;
    case "DiskImageDeleted":
      await refs().execute();
      await disk
        .set((eb) => ({
          status: "deleted",
          references: 0,
          deletion_task_id: eb.fn.coalesce("deletion_task_id", eb.val(event.data.taskId)),
          deletion_requested_at: eb.fn.coalesce("deletion_requested_at", eb.val(new Date(event.data.at))),
          deleted_at: new Date(event.data.at),
          ...touch,
        }))
        .execute();
      return;
  }
}
