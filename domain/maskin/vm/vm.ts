import { z } from "zod";
import type { Decider } from "../../shared/decider.ts";
import { DomainError } from "../../shared/errors.ts";
import { At, Datacenter, Id, ResourceName, ResourcesSchema, unreachable, type Resources } from "./common.ts";
import { DiskImageModeSchema, DiskTemplateSchema, TemplateWarningSchema } from "./disk.ts";
import { vmMac, VM_MAX_NICS } from "./mac.ts";
import { PlacementChosenSchema, PlacementRejectedSchema } from "./placement.ts";

/**
 * A VM (stream `maskin-vm-<vmId>`): its desired state, its lifecycle and what
 * was decided for it (placement with the explanation, disk reference, NICs).
 *
 *   requested → placing → provisioning → running ⇄ stopped
 *        any but deleted → deleting → deleted
 *   requested | placing | provisioning → failed (→ deleting)
 *
 * Lifecycle moves only by recorded facts (the saga and the worker record what
 * happened). The runtime state observed from QMP is kept beside it;
 * `vmDrift` compares it with the desired state. Quota is checked on create
 * against the usage the command brings (the project's read model);
 * `quota_exceeded` names the limit and nothing is recorded.
 */

export const VmLifecycleSchema = z.enum(["requested", "placing", "provisioning", "running", "stopped", "deleting", "deleted", "failed"]);
export type VmLifecycle = z.infer<typeof VmLifecycleSchema>;
export const VmDesiredSchema = z.enum(["running", "stopped", "deleted"]);
export type VmDesired = z.infer<typeof VmDesiredSchema>;
/** The runtime as QMP shows it: `query-status` running/paused/shutdown, or no QEMU process at all. */
export const VmObservedSchema = z.enum(["running", "paused", "shutdown", "absent"]);
export type VmObserved = z.infer<typeof VmObservedSchema>;

export const VM_QUOTA_RESOURCES = ["vms", "vcpus", "memoryMiB"] as const;
export type VmQuotaResource = (typeof VM_QUOTA_RESOURCES)[number];
const Count = z.int().nonnegative();
export const VmQuotaSchema = z.strictObject({
  /** The project's limits; an absent one is unlimited. */
  limits: z.strictObject({ vms: Count.optional(), vcpus: Count.optional(), memoryMiB: Count.optional() }),
  /** The project's current usage (VMs not deleted). */
  usage: z.strictObject({ vms: Count, vcpus: Count, memoryMiB: Count }),
});
export type VmQuota = z.infer<typeof VmQuotaSchema>;

/** `quota_exceeded` naming the first exceeded limit (vms, vcpus, memoryMiB), all exceeded in details; null when it fits. */
export function checkVmQuota(resources: Pick<Resources, "vcpus" | "memoryMiB">, quota: VmQuota): DomainError | null {
  const requested = { vms: 1, vcpus: resources.vcpus, memoryMiB: resources.memoryMiB };
  const exceeded = VM_QUOTA_RESOURCES.flatMap((limit) => {
    const value = quota.limits[limit];
    return value !== undefined && quota.usage[limit] + requested[limit] > value ? [{ limit, limitValue: value, usage: quota.usage[limit], requested: requested[limit] }] : [];
  });
  const first = exceeded[0];
  if (!first) return null;
  return new DomainError("quota_exceeded", `project quota ${first.limit} exceeded: ${first.usage} used + ${first.requested} requested > ${first.limitValue}`, { ...first, exceeded });
}

// ---- commands ----

const VmId = Id;
const Task = { taskId: Id, at: At };
const NicSchema = z.strictObject({ network: z.string().min(1).max(100).default("user") });

export const CreateVmSchema = z.strictObject({
  type: z.literal("CreateVm"),
  vmId: VmId,
  name: ResourceName,
  tenantId: Id,
  projectId: Id,
  environmentId: Id.nullable(),
  datacenter: Datacenter,
  resources: ResourcesSchema,
  image: z.strictObject({ name: ResourceName, version: z.string().min(1).max(63) }).nullable(),
  disk: z
    .strictObject({ name: ResourceName, mode: DiskImageModeSchema, template: DiskTemplateSchema.nullable().default(null) })
    .refine((d) => d.mode !== "CreateIfNotExist" || d.template !== null, { message: "CreateIfNotExist needs a template", path: ["template"] }),
  nics: z.array(NicSchema).min(1).max(VM_MAX_NICS),
  antiAffinity: z.strictObject({ group: ResourceName, maxPerHypervisor: z.int().positive().default(1) }).nullable().default(null),
  spreadGroup: ResourceName.nullable().default(null),
  quota: VmQuotaSchema,
  ...Task,
});
const vmCommand = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) => z.strictObject({ type: z.literal(type), vmId: VmId, ...shape, ...Task });

export const VmCommandSchema = z.discriminatedUnion("type", [
  CreateVmSchema,
  vmCommand("StartPlacement", {}),
  vmCommand("RecordPlacement", { chosen: PlacementChosenSchema, rejected: z.array(PlacementRejectedSchema) }),
  vmCommand("RecordPlacementBlocked", { reason: z.string().min(1), blocking: z.enum(["soft", "hard"]), rejected: z.array(PlacementRejectedSchema) }),
  vmCommand("RecordDiskAttached", { diskName: ResourceName, warnings: z.array(TemplateWarningSchema) }),
  vmCommand("RecordVmStarted", {}),
  vmCommand("RecordVmStopped", {}),
  vmCommand("SetVmDesiredState", { desired: z.enum(["running", "stopped"]) }),
  vmCommand("RequestVmReboot", {}),
  vmCommand("DeleteVm", {}),
  vmCommand("CompleteVmDeletion", {}),
  vmCommand("FailVm", { reason: z.string().min(1).max(2000) }),
  z.strictObject({ type: z.literal("RecordRuntimeObservation"), vmId: VmId, observed: VmObservedSchema, at: At }),
]);
export type VmCommand = z.infer<typeof VmCommandSchema>;
export type VmCommandInput = z.input<typeof VmCommandSchema>;
export type VmCommandOf<T extends VmCommand["type"]> = Extract<VmCommand, { type: T }>;

// ---- events ----

const S = z.string().min(1);
const T = { vmId: S, taskId: S, at: S };
export const VmNicSchema = z.object({ index: z.int().nonnegative(), network: S, mac: S });
export type VmNic = z.infer<typeof VmNicSchema>;

export const vmEventSchemas = {
  VmRequested: {
    schemaVersion: 1,
    schema: z.object({
      ...T,
      name: S,
      tenantId: S,
      projectId: S,
      environmentId: S.nullable(),
      datacenter: S,
      resources: ResourcesSchema,
      image: z.object({ name: S, version: S }).nullable(),
      disk: z.object({ name: S, mode: DiskImageModeSchema, template: DiskTemplateSchema.nullable() }),
      nics: z.array(VmNicSchema),
      antiAffinity: z.object({ group: S, maxPerHypervisor: z.int().positive() }).nullable(),
      spreadGroup: S.nullable(),
    }),
  },
  VmPlacementStarted: { schemaVersion: 1, schema: z.object(T) },
  VmPlacementChosen: { schemaVersion: 1, schema: z.object({ ...T, chosen: PlacementChosenSchema, rejected: z.array(PlacementRejectedSchema) }) },
  VmPlacementBlocked: { schemaVersion: 1, schema: z.object({ ...T, reason: S, blocking: z.enum(["soft", "hard"]), rejected: z.array(PlacementRejectedSchema) }) },
  VmDiskAttached: { schemaVersion: 1, schema: z.object({ ...T, diskName: S, warnings: z.array(TemplateWarningSchema) }) },
  VmStarted: { schemaVersion: 1, schema: z.object({ ...T, hostId: S }) },
  VmStopped: { schemaVersion: 1, schema: z.object({ ...T, hostId: S }) },
  VmDesiredStateSet: { schemaVersion: 1, schema: z.object({ ...T, desired: VmDesiredSchema }) },
  VmRebootRequested: { schemaVersion: 1, schema: z.object({ ...T, hostId: S }) },
  VmDeletionStarted: { schemaVersion: 1, schema: z.object({ ...T, from: VmLifecycleSchema, hostId: S.nullable() }) },
  VmDeleted: { schemaVersion: 1, schema: z.object({ ...T, hostId: S.nullable() }) },
  VmFailed: { schemaVersion: 1, schema: z.object({ ...T, from: VmLifecycleSchema, reason: S }) },
  VmRuntimeObserved: { schemaVersion: 1, schema: z.object({ vmId: S, observed: VmObservedSchema, previous: VmObservedSchema.nullable(), at: S }) },
} as const;
type Schemas = typeof vmEventSchemas;
export type VmEventType = keyof Schemas;
export type VmEvent = { [K in VmEventType]: { type: K; data: z.infer<Schemas[K]["schema"]> } }[VmEventType];
export type VmEventOf<K extends VmEventType> = Extract<VmEvent, { type: K }>;
export const VM_EVENT_TYPES = Object.keys(vmEventSchemas) as VmEventType[];
export function vmEvent<K extends VmEventType>(type: K, data: VmEventOf<K>["data"]): VmEventOf<K> {
  return { type, data } as VmEventOf<K>;
}

// ---- state ----

export interface VmState {
  readonly vm: VmEventOf<"VmRequested">["data"] | null;
  readonly lifecycle: VmLifecycle | null;
  readonly desired: VmDesired;
  readonly placement: { readonly chosen: z.infer<typeof PlacementChosenSchema>; readonly rejected: ReadonlyArray<z.infer<typeof PlacementRejectedSchema>> } | null;
  /** The last time placement found nowhere to go (cleared when placed). */
  readonly blocked: { readonly reason: string; readonly blocking: "soft" | "hard"; readonly rejected: ReadonlyArray<z.infer<typeof PlacementRejectedSchema>> } | null;
  readonly disk: { readonly name: string; readonly warnings: ReadonlyArray<z.infer<typeof TemplateWarningSchema>> } | null;
  readonly observed: { readonly state: VmObserved; readonly at: string } | null;
  readonly failure: string | null;
}
export const initialVmState: VmState = { vm: null, lifecycle: null, desired: "running", placement: null, blocked: null, disk: null, observed: null, failure: null };

export type VmDrift =
  | { readonly kind: "not_running"; readonly desired: "running"; readonly observed: VmObserved }
  | { readonly kind: "not_stopped"; readonly desired: "stopped"; readonly observed: VmObserved }
  | { readonly kind: "process_after_delete"; readonly desired: "deleted"; readonly observed: VmObserved };

/**
 * Desired against observed, for settled VMs only (running, stopped, deleted):
 * a VM that died outside Maskin (desired running, observed shutdown/absent/paused),
 * one running that should be stopped, a QEMU process left after deletion.
 * Null when they agree, nothing was observed yet, or the VM is in transition.
 */
export function vmDrift(state: VmState): VmDrift | null {
  if (!state.observed || !state.lifecycle) return null;
  const observed = state.observed.state;
  if (state.lifecycle === "deleted") return observed === "absent" ? null : { kind: "process_after_delete", desired: "deleted", observed };
  if (state.lifecycle !== "running" && state.lifecycle !== "stopped") return null;
  if (state.desired === "running" && observed !== "running") return { kind: "not_running", desired: "running", observed };
  if (state.desired === "stopped" && (observed === "running" || observed === "paused")) return { kind: "not_stopped", desired: "stopped", observed };
  return null;
}

/** QEMU processes found on a hypervisor whose VM is unknown or deleted: drift with no VM record to hang it on. Sorted. */
export function orphanProcesses(observedVmIds: Iterable<string>, known: ReadonlyMap<string, VmLifecycle>): string[] {
  return [...new Set(observedVmIds)].filter((id) => {
    const lifecycle = known.get(id);
    return lifecycle === undefined || lifecycle === "deleted";
  }).sort();
}

// ---- decider ----

function invalid(state: VmState, command: VmCommand): DomainError {
  return new DomainError("vm_invalid_state", `VM ${command.vmId} is ${state.lifecycle}: ${command.type} is not allowed`, { vmId: command.vmId, state: state.lifecycle, command: command.type });
}

function decide(command: VmCommand, state: VmState): readonly VmEvent[] | DomainError {
  if (command.type === "CreateVm") {
    if (state.vm) {
      if (state.vm.taskId === command.taskId) return [];
      return new DomainError("vm_exists", `VM ${command.vmId} exists`, { vmId: command.vmId, state: state.lifecycle });
    }
    const quota = checkVmQuota(command.resources, command.quota);
    if (quota) return quota;
    const { type: _t, quota: _q, nics, ...data } = command;
    return [vmEvent("VmRequested", { ...data, nics: nics.map((nic, index) => ({ index, network: nic.network, mac: vmMac(command.vmId, index) })) })];
  }
  const vm = state.vm;
  const lifecycle = state.lifecycle;
  if (!vm || !lifecycle) return new DomainError("vm_not_found", `VM ${command.vmId} does not exist`, { vmId: command.vmId });
  if (command.type === "RecordRuntimeObservation") {
    if (state.observed?.state === command.observed) return [];
    if (state.observed && state.observed.at > command.at) return [];
    return [vmEvent("VmRuntimeObserved", { vmId: vm.vmId, observed: command.observed, previous: state.observed?.state ?? null, at: command.at })];
  }
  const base = { vmId: vm.vmId, taskId: command.taskId, at: command.at };
  const hostId = state.placement?.chosen.hostId ?? null;
  switch (command.type) {
    case "StartPlacement":
      if (lifecycle === "placing") return [];
      if (lifecycle !== "requested") return invalid(state, command);
      return [vmEvent("VmPlacementStarted", base)];
    case "RecordPlacement":
      if (state.placement && lifecycle !== "requested" && lifecycle !== "placing" && state.placement.chosen.hostId === command.chosen.hostId) return [];
      if (lifecycle !== "requested" && lifecycle !== "placing") return invalid(state, command);
      return [vmEvent("VmPlacementChosen", { ...base, chosen: command.chosen, rejected: command.rejected })];
    case "RecordPlacementBlocked":
      if (lifecycle !== "requested" && lifecycle !== "placing") return invalid(state, command);
      return [vmEvent("VmPlacementBlocked", { ...base, reason: command.reason, blocking: command.blocking, rejected: command.rejected })];
    case "RecordDiskAttached":
      if (state.disk?.name === command.diskName) return [];
      if (lifecycle !== "provisioning") return invalid(state, command);
      return [vmEvent("VmDiskAttached", { ...base, diskName: command.diskName, warnings: command.warnings })];
    case "RecordVmStarted":
      if (lifecycle === "running") return [];
      if ((lifecycle !== "provisioning" && lifecycle !== "stopped") || !hostId) return invalid(state, command);
      return [vmEvent("VmStarted", { ...base, hostId })];
    case "RecordVmStopped":
      if (lifecycle === "stopped") return [];
      if (lifecycle !== "running" || !hostId) return invalid(state, command);
      return [vmEvent("VmStopped", { ...base, hostId })];
    case "SetVmDesiredState":
      if (lifecycle === "deleting" || lifecycle === "deleted" || lifecycle === "failed") return invalid(state, command);
      if (state.desired === command.desired) return [];
      return [vmEvent("VmDesiredStateSet", { ...base, desired: command.desired })];
    case "RequestVmReboot":
      if (lifecycle !== "running" || !hostId) return new DomainError("vm_not_running", `VM ${vm.vmId} is ${lifecycle}, not running`, { vmId: vm.vmId, state: lifecycle });
      return [vmEvent("VmRebootRequested", { ...base, hostId })];
    case "DeleteVm":
      if (lifecycle === "deleting" || lifecycle === "deleted") return [];
      return [vmEvent("VmDeletionStarted", { ...base, from: lifecycle, hostId })];
    case "CompleteVmDeletion":
      if (lifecycle === "deleted") return [];
      if (lifecycle !== "deleting") return invalid(state, command);
      return [vmEvent("VmDeleted", { ...base, hostId })];
    case "FailVm":
      if (lifecycle === "failed") return [];
      if (lifecycle !== "requested" && lifecycle !== "placing" && lifecycle !== "provisioning") return invalid(state, command);
      return [vmEvent("VmFailed", { ...base, from: lifecycle, reason: command.reason })];
    default:
      return unreachable(command);
  }
}

function evolve(state: VmState, event: VmEvent): VmState {
  switch (event.type) {
    case "VmRequested":
      return { ...initialVmState, vm: event.data, lifecycle: "requested", desired: "running" };
    case "VmPlacementStarted":
      return { ...state, lifecycle: "placing" };
    case "VmPlacementChosen":
      return { ...state, lifecycle: "provisioning", placement: { chosen: event.data.chosen, rejected: event.data.rejected }, blocked: null };
    case "VmPlacementBlocked":
      return { ...state, lifecycle: "placing", blocked: { reason: event.data.reason, blocking: event.data.blocking, rejected: event.data.rejected } };
    case "VmDiskAttached":
      return { ...state, disk: { name: event.data.diskName, warnings: event.data.warnings } };
    case "VmStarted":
      return { ...state, lifecycle: "running" };
    case "VmStopped":
      return { ...state, lifecycle: "stopped" };
    case "VmDesiredStateSet":
      return { ...state, desired: event.data.desired };
    case "VmRebootRequested":
      return state;
    case "VmDeletionStarted":
      return { ...state, lifecycle: "deleting", desired: "deleted" };
    case "VmDeleted":
      return { ...state, lifecycle: "deleted", desired: "deleted" };
    case "VmFailed":
      return { ...state, lifecycle: "failed", failure: event.data.reason };
    case "VmRuntimeObserved":
      return { ...state, observed: { state: event.data.observed, at: event.data.at } };
    default:
      return unreachable(event);
  }
}

export const vmDecider: Decider<VmCommand, VmEvent, VmState> = { initialState: initialVmState, decide, evolve };
