import {
  executeCapacityCommand,
  executeDiskImageCommand,
  executePortCommand,
  executeVmCommand,
  loadDiskImage,
  loadImage,
  loadPortPool,
  loadVm,
} from "../../../commands/maskin/vm/index.ts";
import type { CommandStore } from "../../../commands/pipeline.ts";
import {
  portsOfVm,
  type CapacityCommandInput,
  type DiskImageCommandInput,
  type PortCommandInput,
  type VmCommandInput,
  type VmState,
} from "../../../domain/maskin/vm/index.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import { PLATFORM_TENANT, type Actor } from "../../../domain/shared/envelope.ts";
import type { TaskCommandInput } from "../../../domain/task/commands.ts";
import type { ExistingTask } from "../../../domain/task/state.ts";
import { sagaPlan, type TaskSaga, type WorkSpec } from "../../runtime/types.ts";

/**
 * What the VM sagas read besides the event store: which hypervisors a
 * datacenter has, and which VM waits longest for capacity there. The
 * composition root gives the maskin_vms read model (api/read/vms.ts
 * `VmReadModel`); the capacity itself is always read from the hypervisors'
 * own streams (the read model only lists them, so its lag never decides a
 * reservation).
 */
export interface VmDirectory {
  /** Host ids of the registered hypervisors of the datacenter. */
  hypervisorsIn(datacenter: string): Promise<readonly string[]>;
  /** The create task of the VM whose placement has waited longest (blocked) in the datacenter; null when none waits. */
  oldestBlockedPlacement(datacenter: string): Promise<string | null>;
}

/** The VM sagas' dependencies: the event store and the VM directory. */
export interface VmSagaDeps {
  readonly store: CommandStore;
  readonly vms?: VmDirectory;
}

export const VM_SAGA_ACTOR: Actor = { kind: "service", id: "saga/maskin-vm" };
export const HYPERVISOR_SERVICE = "hypervisor";

export function directoryOf(deps: VmSagaDeps): VmDirectory {
  // A configuration error (the composition root forgot it), not a business rule: not a DomainError, so the step is retried and logged.
  if (!deps.vms) throw new Error("the VM sagas need deps.vms (a VmDirectory: api/read/vms.ts VmReadModel)");
  return deps.vms;
}

export interface VmTaskInput {
  readonly vmId: string;
  readonly datacenter: string;
}

export function vmInputOf(task: ExistingTask): VmTaskInput {
  const input = task.input as Partial<VmTaskInput>;
  if (typeof input.vmId !== "string" || typeof input.datacenter !== "string") {
    throw new DomainError("invalid_task_input", `task ${task.taskId} lacks vmId/datacenter in its input`, { taskId: task.taskId });
  }
  return { vmId: input.vmId, datacenter: input.datacenter };
}

export const at = (): string => new Date().toISOString();

function context(task: ExistingTask) {
  const correlationId = typeof task.input.correlationId === "string" ? task.input.correlationId : task.taskId;
  return { actor: VM_SAGA_ACTOR, correlationId, causationId: task.taskId };
}

/** VM commands are filed under the VM's own scope (executeVmCommand reads it). */
export function vmCommand(deps: VmSagaDeps, task: ExistingTask, command: VmCommandInput) {
  return executeVmCommand(deps.store, command, context(task));
}

export function capacityCommand(deps: VmSagaDeps, task: ExistingTask, command: CapacityCommandInput) {
  return executeCapacityCommand(deps.store, command, { ...context(task), scope: { tenantId: PLATFORM_TENANT } });
}

export function portCommand(deps: VmSagaDeps, task: ExistingTask, command: PortCommandInput) {
  return executePortCommand(deps.store, command, { ...context(task), scope: { tenantId: PLATFORM_TENANT } });
}

export function diskCommand(deps: VmSagaDeps, task: ExistingTask, command: DiskImageCommandInput) {
  return executeDiskImageCommand(deps.store, command, context(task));
}

/** The VM's state; a VM that does not exist is refused (vm_not_found: the task fails). */
export async function existingVm(deps: VmSagaDeps, vmId: string): Promise<VmState & { vm: NonNullable<VmState["vm"]> }> {
  const { state } = await loadVm(deps.store, vmId);
  if (!state.vm) throw new DomainError("vm_not_found", `VM ${vmId} does not exist`, { vmId });
  return state as VmState & { vm: NonNullable<VmState["vm"]> };
}

/** The hypervisor the VM was placed on; refused when it was never placed. */
export function placedHost(state: VmState): string {
  const hostId = state.placement?.chosen.hostId;
  if (!hostId) throw new DomainError("vm_not_placed", `VM ${state.vm?.vmId} has no hypervisor (never placed)`, { vmId: state.vm?.vmId });
  return hostId;
}

/** A work request for the hypervisor worker of the host the VM runs on. */
export function hypervisorWork(state: VmState, action: string, payload: Record<string, unknown>): WorkSpec {
  return { service: HYPERVISOR_SERVICE, action, datacenter: state.vm!.datacenter, target: placedHost(state), payload };
}

/** An image version as the hypervisor worker imports it (name, version and the version's content). */
export interface ImageRef {
  readonly name: string;
  readonly version: string;
  readonly format: string;
  readonly digest: string;
  readonly source: unknown;
  readonly boot: unknown;
}

export async function imageRef(deps: VmSagaDeps, image: { name: string; version: string }): Promise<ImageRef & { cmdline: string }> {
  const { state } = await loadImage(deps.store, image.name);
  const version = state.versions.get(image.version);
  if (!version) throw new DomainError("image_not_found", `image ${image.name}@${image.version} is not registered`, { ...image });
  const c = version.content;
  return { name: image.name, version: image.version, format: c.format, digest: c.digest, source: c.source, boot: c.boot, cmdline: c.boot?.cmdline ?? "" };
}

/** The image the VM boots: its own, else its disk template's. */
export async function bootImageOf(deps: VmSagaDeps, state: VmState): Promise<(ImageRef & { cmdline: string }) | null> {
  const vm = state.vm!;
  if (vm.image) return imageRef(deps, vm.image);
  const disk = (await loadDiskImage(deps.store, vm.datacenter, vm.disk.name)).state;
  const template = disk.template ?? vm.disk.template;
  return template ? imageRef(deps, template.image) : null;
}

/** The vm-start payload: resources, boot (the image's kernel for kernel+initrd images, else the disk), the prepared disk, the seed, NICs with their SSH ports. */
export async function vmStartPayload(deps: VmSagaDeps, state: VmState): Promise<Record<string, unknown>> {
  const vm = state.vm!;
  const hostId = placedHost(state);
  const image = await bootImageOf(deps, state);
  const ports = portsOfVm((await loadPortPool(deps.store, hostId)).state, vm.vmId);
  const boot =
    image?.format === "kernel+initrd"
      ? { kind: "image-kernel", image: { name: image.name, version: image.version }, ...(image.cmdline ? { append: image.cmdline } : {}) }
      : { kind: "disk" };
  const nics = vm.nics.map((nic) => {
    const port = ports.find((p) => p.nicIndex === nic.index)?.port;
    return { mac: nic.mac, ...(port !== undefined ? { sshHostPort: port } : {}) };
  });
  return { vmId: vm.vmId, vcpus: vm.resources.vcpus, memoryMiB: vm.resources.memoryMiB, boot, disk: { prepared: true }, seed: true, nics };
}

export interface VmTaskScope {
  readonly tenantId: string;
  readonly projectId: string;
  readonly environmentId: string | null;
}

/** A CreateTask for a VM saga: scoped to the VM's tenant/project/environment, resource {type: "vm", id}. */
export function vmTask(
  saga: TaskSaga<any>,
  options: {
    readonly taskId: string;
    readonly vmId: string;
    readonly vmName: string;
    readonly datacenter: string;
    readonly scope: VmTaskScope;
    readonly title: string;
    readonly correlationId: string;
    readonly now: Date;
    readonly deadlineMs: number;
    readonly maxAttempts: number;
    readonly input?: Record<string, unknown>;
    /** Only these steps of the saga (in its order): a plan decided when the task is made. */
    readonly steps?: readonly string[];
  },
): TaskCommandInput {
  const plan = sagaPlan(saga).filter((s) => !options.steps || options.steps.includes(s.name));
  return {
    type: "CreateTask",
    taskId: options.taskId,
    kind: saga.kind,
    title: options.title,
    resource: { type: "vm", id: options.vmId },
    scope: { tenantId: options.scope.tenantId, projectId: options.scope.projectId, environmentId: options.scope.environmentId },
    steps: plan,
    deadline: new Date(options.now.getTime() + options.deadlineMs).toISOString(),
    maxAttempts: options.maxAttempts,
    input: { ...(options.input ?? {}), vmId: options.vmId, vmName: options.vmName, datacenter: options.datacenter, correlationId: options.correlationId },
    at: options.now.toISOString(),
  };
}
