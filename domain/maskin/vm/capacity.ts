import { z } from "zod";
import type { Decider } from "../../shared/decider.ts";
import { DomainError } from "../../shared/errors.ts";
import {
  addResources,
  At,
  Datacenter,
  Id,
  RESOURCE_KINDS,
  ResourceName,
  ResourcesSchema,
  sameResources,
  unreachable,
  ZERO_RESOURCES,
  type ResourceKind,
  type Resources,
} from "./common.ts";

/**
 * Hypervisor capacity (stream `maskin-hv-<hostId>`): the pool of one
 * hypervisor's vCPUs, memory and disk, and which VM holds how much of it.
 * Every reservation is decided on this one stream, so two VMs racing for the
 * last slot are decided one after the other (the append of the second fails
 * its expected-version check, it re-reads, and is refused).
 */

// ---- overcommit ----

const Ratio = z.number().positive().max(64);
/** Overcommit ratios (allocatable = floor(physical × ratio)); set per datacenter, carried by RegisterHypervisor. */
export const OvercommitSchema = z.strictObject({ cpu: Ratio, memory: Ratio, disk: Ratio });
export type Overcommit = z.infer<typeof OvercommitSchema>;
export const DEFAULT_OVERCOMMIT: Overcommit = Object.freeze({ cpu: 4, memory: 1, disk: 1 });

export function allocatableOf(physical: Resources, overcommit: Overcommit): Resources {
  return {
    vcpus: Math.floor(physical.vcpus * overcommit.cpu),
    memoryMiB: Math.floor(physical.memoryMiB * overcommit.memory),
    diskGiB: Math.floor(physical.diskGiB * overcommit.disk),
  };
}

/** The resources `wanted` would exceed in `free` (empty: it fits). */
export function shortfall(free: Resources, wanted: Resources): Array<{ resource: ResourceKind; requested: number; free: number }> {
  return RESOURCE_KINDS.filter((kind) => wanted[kind] > free[kind]).map((resource) => ({ resource, requested: wanted[resource], free: free[resource] }));
}

// ---- commands ----

const HostId = Id;
/** Physical capacity: whole vCPUs (threads), MiB, GiB. */
const PhysicalSchema = z.strictObject({ vcpus: z.int().nonnegative(), memoryMiB: z.int().nonnegative(), diskGiB: z.int().nonnegative() });

export const RegisterHypervisorSchema = z.strictObject({
  type: z.literal("RegisterHypervisor"),
  hostId: HostId,
  /** The inventory host's name (placement breaks ties by it). */
  name: z.string().min(1).max(100),
  datacenter: Datacenter,
  capacity: PhysicalSchema,
  overcommit: OvercommitSchema.default(DEFAULT_OVERCOMMIT),
  at: At,
});
export const ReserveCapacitySchema = z.strictObject({
  type: z.literal("ReserveCapacity"),
  hostId: HostId,
  vmId: Id,
  resources: ResourcesSchema,
  /** Anti-affinity / spread groups the VM belongs to (placement counts members per hypervisor). */
  groups: z.array(ResourceName).max(16).default([]),
  taskId: Id,
  at: At,
});
export const ReleaseCapacitySchema = z.strictObject({ type: z.literal("ReleaseCapacity"), hostId: HostId, vmId: Id, taskId: Id, at: At });
export const CordonHypervisorSchema = z.strictObject({ type: z.literal("CordonHypervisor"), hostId: HostId, reason: z.string().max(500), at: At });
export const UncordonHypervisorSchema = z.strictObject({ type: z.literal("UncordonHypervisor"), hostId: HostId, at: At });
export const DrainHypervisorSchema = z.strictObject({ type: z.literal("DrainHypervisor"), hostId: HostId, taskId: Id, reason: z.string().max(500), at: At });
/**
 * What the hypervisor's runtime observer saw: the QEMU processes on the host
 * with no VM record (unknown or deleted VM; vm.ts `orphanProcesses`). Recorded
 * only when the set changes. An observation, not an order: nothing acts on it.
 */
export const RecordHypervisorOrphansSchema = z.strictObject({
  type: z.literal("RecordHypervisorOrphans"),
  hostId: HostId,
  vmIds: z.array(Id).max(1000),
  at: At,
});

export const CapacityCommandSchema = z.discriminatedUnion("type", [
  RegisterHypervisorSchema,
  ReserveCapacitySchema,
  ReleaseCapacitySchema,
  CordonHypervisorSchema,
  UncordonHypervisorSchema,
  DrainHypervisorSchema,
  RecordHypervisorOrphansSchema,
]);
export type CapacityCommand = z.infer<typeof CapacityCommandSchema>;
export type CapacityCommandInput = z.input<typeof CapacityCommandSchema>;

// ---- events ----

const S = z.string().min(1);
const ReservationData = z.object({ hostId: S, vmId: S, resources: ResourcesSchema, groups: z.array(z.string()), taskId: S, at: S });

export const capacityEventSchemas = {
  HypervisorRegistered: {
    schemaVersion: 1,
    schema: z.object({ hostId: S, name: S, datacenter: S, capacity: PhysicalSchema, overcommit: OvercommitSchema, allocatable: PhysicalSchema, at: S }),
  },
  HypervisorCapacityChanged: {
    schemaVersion: 1,
    schema: z.object({ hostId: S, name: S, capacity: PhysicalSchema, overcommit: OvercommitSchema, allocatable: PhysicalSchema, at: S }),
  },
  CapacityReserved: { schemaVersion: 1, schema: ReservationData },
  CapacityReleased: { schemaVersion: 1, schema: z.object({ hostId: S, vmId: S, resources: ResourcesSchema, taskId: S, at: S }) },
  HypervisorCordoned: { schemaVersion: 1, schema: z.object({ hostId: S, reason: z.string(), at: S }) },
  HypervisorUncordoned: { schemaVersion: 1, schema: z.object({ hostId: S, at: S }) },
  HypervisorDrainRequested: {
    schemaVersion: 1,
    schema: z.object({
      hostId: S,
      taskId: S,
      reason: z.string(),
      /** The VMs that must move, as of the request (sorted by id). */
      vms: z.array(z.object({ vmId: S, resources: ResourcesSchema, groups: z.array(z.string()) })),
      at: S,
    }),
  },
  /** The orphan QEMU processes now (sorted VM ids; empty: none left) and before. */
  HypervisorOrphansObserved: { schemaVersion: 1, schema: z.object({ hostId: S, vmIds: z.array(S), previous: z.array(S), at: S }) },
} as const;

type Schemas = typeof capacityEventSchemas;
export type CapacityEventType = keyof Schemas;
export type CapacityEvent = { [T in CapacityEventType]: { type: T; data: z.infer<Schemas[T]["schema"]> } }[CapacityEventType];
export type CapacityEventOf<T extends CapacityEventType> = Extract<CapacityEvent, { type: T }>;
export const CAPACITY_EVENT_TYPES = Object.keys(capacityEventSchemas) as CapacityEventType[];
export function capacityEvent<T extends CapacityEventType>(type: T, data: CapacityEventOf<T>["data"]): CapacityEventOf<T> {
  return { type, data } as CapacityEventOf<T>;
}

// ---- state ----

export interface Reservation {
  readonly vmId: string;
  readonly resources: Resources;
  readonly groups: readonly string[];
  readonly taskId: string;
  readonly at: string;
}

export interface HypervisorState {
  /** Null until registered. */
  readonly hostId: string | null;
  readonly name: string;
  readonly datacenter: string;
  readonly capacity: Resources;
  readonly overcommit: Overcommit;
  readonly allocatable: Resources;
  readonly cordon: { readonly reason: string; readonly at: string } | null;
  readonly drain: { readonly taskId: string; readonly at: string } | null;
  readonly reservations: ReadonlyMap<string, Reservation>;
  /** Sum of the reservations. */
  readonly used: Resources;
  /** QEMU processes on the host with no VM record, as last observed (sorted VM ids). */
  readonly orphans: { readonly vmIds: readonly string[]; readonly at: string } | null;
}

export const initialHypervisorState: HypervisorState = {
  hostId: null,
  name: "",
  datacenter: "",
  capacity: ZERO_RESOURCES,
  overcommit: DEFAULT_OVERCOMMIT,
  allocatable: ZERO_RESOURCES,
  cordon: null,
  drain: null,
  reservations: new Map(),
  used: ZERO_RESOURCES,
  orphans: null,
};

/** Allocatable minus reserved (negative when capacity was lowered below what is reserved). */
export function freeCapacity(state: HypervisorState): Resources {
  return {
    vcpus: state.allocatable.vcpus - state.used.vcpus,
    memoryMiB: state.allocatable.memoryMiB - state.used.memoryMiB,
    diskGiB: state.allocatable.diskGiB - state.used.diskGiB,
  };
}

export interface DrainReport {
  readonly hostId: string;
  readonly cordoned: boolean;
  /** Every VM with a reservation here: what must move before the hypervisor is empty. Sorted by VM id. */
  readonly vms: ReadonlyArray<{ vmId: string; resources: Resources; groups: readonly string[] }>;
  readonly used: Resources;
}

export function drainReport(state: HypervisorState): DrainReport {
  const vms = [...state.reservations.values()]
    .sort((a, b) => (a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0))
    .map((r) => ({ vmId: r.vmId, resources: r.resources, groups: [...r.groups] }));
  return { hostId: state.hostId ?? "", cordoned: state.cordon !== null, vms, used: state.used };
}

// ---- decider ----

function notRegistered(hostId: string): DomainError {
  return new DomainError("hypervisor_not_registered", `host ${hostId} is not a registered hypervisor`, { hostId });
}

function sameGroups(a: readonly string[], b: readonly string[]): boolean {
  const x = [...new Set(a)].sort();
  const y = [...new Set(b)].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function decide(command: CapacityCommand, state: HypervisorState): readonly CapacityEvent[] | DomainError {
  if (command.type === "RegisterHypervisor") {
    const allocatable = allocatableOf(command.capacity, command.overcommit);
    if (state.hostId === null) {
      const { type: _t, ...data } = command;
      return [capacityEvent("HypervisorRegistered", { ...data, allocatable })];
    }
    if (state.datacenter !== command.datacenter) {
      return new DomainError("hypervisor_datacenter_mismatch", `hypervisor ${command.hostId} is in ${state.datacenter}, not ${command.datacenter}`, {
        hostId: command.hostId,
        datacenter: state.datacenter,
      });
    }
    const o = command.overcommit;
    const p = state.overcommit;
    if (sameResources(state.capacity, command.capacity) && state.name === command.name && o.cpu === p.cpu && o.memory === p.memory && o.disk === p.disk) return [];
    return [capacityEvent("HypervisorCapacityChanged", { hostId: command.hostId, name: command.name, capacity: command.capacity, overcommit: o, allocatable, at: command.at })];
  }
  if (state.hostId === null) return notRegistered(command.hostId);
  switch (command.type) {
    case "ReserveCapacity": {
      const held = state.reservations.get(command.vmId);
      if (held) {
        if (sameResources(held.resources, command.resources) && sameGroups(held.groups, command.groups)) return [];
        return new DomainError("reservation_mismatch", `VM ${command.vmId} already holds a different reservation on ${state.name}; release it first`, {
          hostId: state.hostId,
          vmId: command.vmId,
          held: held.resources,
        });
      }
      if (state.cordon) {
        return new DomainError("hypervisor_cordoned", `hypervisor ${state.name} is cordoned: ${state.cordon.reason}`, { hostId: state.hostId, reason: state.cordon.reason });
      }
      const short = shortfall(freeCapacity(state), command.resources);
      if (short.length > 0) {
        return new DomainError("insufficient_capacity", `hypervisor ${state.name} lacks ${short.map((s) => `${s.resource} (${s.requested} > ${s.free} free)`).join(", ")}`, {
          hostId: state.hostId,
          shortfall: short,
        });
      }
      const { type: _t, ...data } = command;
      return [capacityEvent("CapacityReserved", { ...data, groups: [...new Set(data.groups)].sort() })];
    }
    case "ReleaseCapacity": {
      const held = state.reservations.get(command.vmId);
      if (!held) return [];
      return [capacityEvent("CapacityReleased", { hostId: state.hostId, vmId: command.vmId, resources: held.resources, taskId: command.taskId, at: command.at })];
    }
    case "CordonHypervisor":
      if (state.cordon) return [];
      return [capacityEvent("HypervisorCordoned", { hostId: state.hostId, reason: command.reason, at: command.at })];
    case "UncordonHypervisor":
      if (!state.cordon) return [];
      return [capacityEvent("HypervisorUncordoned", { hostId: state.hostId, at: command.at })];
    case "DrainHypervisor": {
      if (state.drain?.taskId === command.taskId) return [];
      const events: CapacityEvent[] = [];
      if (!state.cordon) events.push(capacityEvent("HypervisorCordoned", { hostId: state.hostId, reason: `drain: ${command.reason}`, at: command.at }));
      const report = drainReport(state);
      events.push(
        capacityEvent("HypervisorDrainRequested", {
          hostId: state.hostId,
          taskId: command.taskId,
          reason: command.reason,
          vms: report.vms.map((v) => ({ ...v, groups: [...v.groups] })),
          at: command.at,
        }),
      );
      return events;
    }
    case "RecordHypervisorOrphans": {
      const vmIds = [...new Set(command.vmIds)].sort();
      const previous = state.orphans?.vmIds ?? [];
      if (state.orphans && state.orphans.at > command.at) return [];
      if (vmIds.length === previous.length && vmIds.every((id, i) => id === previous[i])) return [];
      return [capacityEvent("HypervisorOrphansObserved", { hostId: state.hostId, vmIds, previous: [...previous], at: command.at })];
    }
    default:
      return unreachable(command);
  }
}

function evolve(state: HypervisorState, event: CapacityEvent): HypervisorState {
  switch (event.type) {
    case "HypervisorRegistered": {
      const d = event.data;
      return { ...state, hostId: d.hostId, name: d.name, datacenter: d.datacenter, capacity: d.capacity, overcommit: d.overcommit, allocatable: d.allocatable };
    }
    case "HypervisorCapacityChanged": {
      const d = event.data;
      return { ...state, name: d.name, capacity: d.capacity, overcommit: d.overcommit, allocatable: d.allocatable };
    }
    case "CapacityReserved": {
      const { hostId: _h, ...reservation } = event.data;
      const reservations = new Map(state.reservations);
      reservations.set(reservation.vmId, reservation);
      return { ...state, reservations, used: addResources(state.used, reservation.resources) };
    }
    case "CapacityReleased": {
      const held = state.reservations.get(event.data.vmId);
      if (!held) return state;
      const reservations = new Map(state.reservations);
      reservations.delete(event.data.vmId);
      const r = held.resources;
      return { ...state, reservations, used: addResources(state.used, { vcpus: -r.vcpus, memoryMiB: -r.memoryMiB, diskGiB: -r.diskGiB }) };
    }
    case "HypervisorCordoned":
      return { ...state, cordon: { reason: event.data.reason, at: event.data.at } };
    case "HypervisorUncordoned":
      return { ...state, cordon: null, drain: null };
    case "HypervisorDrainRequested":
      return { ...state, drain: { taskId: event.data.taskId, at: event.data.at } };
    case "HypervisorOrphansObserved":
      return { ...state, orphans: { vmIds: [...event.data.vmIds], at: event.data.at } };
    default:
      return unreachable(event);
  }
}

export const capacityDecider: Decider<CapacityCommand, CapacityEvent, HypervisorState> = {
  initialState: initialHypervisorState,
  decide,
  evolve,
};
