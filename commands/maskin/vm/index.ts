import { PLATFORM_TENANT, type Scope } from "../../../domain/shared/envelope.ts";
import { fold } from "../../../domain/shared/decider.ts";
import {
  CapacityCommandSchema,
  DiskImageCommandSchema,
  ImageCommandSchema,
  VmCommandSchema,
  capacityDecider,
  capacityEventSchemas,
  diskImageDecider,
  diskImageEventSchemas,
  diskImageStreamId,
  hypervisorStreamId,
  imageDecider,
  imageEventSchemas,
  imageStreamId,
  PortCommandSchema,
  portEventSchemas,
  portPoolDecider,
  portPoolStreamId,
  vmDecider,
  vmEventSchemas,
  vmStreamId,
  type CapacityCommand,
  type CapacityCommandInput,
  type CapacityEvent,
  type DiskImageCommand,
  type DiskImageCommandInput,
  type DiskImageEvent,
  type DiskImageState,
  type HypervisorState,
  type ImageCommand,
  type ImageCommandInput,
  type ImageEvent,
  type ImageState,
  type PortCommand,
  type PortCommandInput,
  type PortEvent,
  type PortPoolState,
  type VmCommand,
  type VmCommandInput,
  type VmEvent,
  type VmState,
} from "../../../domain/maskin/vm/index.ts";
import { CommandScopeError } from "../../errors.ts";
import type { CommandContext, CommandHandler, CommandResult, ExecuteOptions, StreamVersion } from "../../handler.ts";
import { executeCommand, loadStream, parseCommand, type CommandStore } from "../../pipeline.ts";

/**
 * Maskin VM commands (see domain/maskin/README.md, "VMs").
 *
 * Scopes:
 * - hypervisor capacity (`maskin-hv-<hostId>`) and images (`maskin-image-<name>`)
 *   are the platform's: filed under the platform scope, like pool and host events;
 * - a VM (`maskin-vm-<vmId>`) is its tenant's: `CreateVm` names
 *   tenant/project/environment; every later command is filed under the scope
 *   of the VM's first event (executeVmCommand reads it), and a caller scoped
 *   to another tenant/project/environment is refused (CommandScopeError);
 * - a disk image (`maskin-disk-<datacenter>-<name>`) is filed under the
 *   scope of the VM the command is about (`ReferenceDiskImage`,
 *   `ReleaseDiskImageReference`), or for `DeleteDiskImage` the caller's scope,
 *   else that of the disk image's first event.
 * The `execute…` helpers fill the context's datacenter from the command, or
 * from the stream's first event.
 */
const platformScope = (): Scope => ({ tenantId: PLATFORM_TENANT });

export function vmEnvelopeScope(vm: { tenantId: string; projectId: string; environmentId: string | null }): Scope {
  return { tenantId: vm.tenantId, projectId: vm.projectId, ...(vm.environmentId ? { environmentId: vm.environmentId } : {}) };
}

export const capacityHandler: CommandHandler<CapacityCommand, CapacityEvent, HypervisorState> = {
  name: "maskin.hypervisor",
  commandSchema: CapacityCommandSchema,
  decider: capacityDecider,
  streamId: (command) => hypervisorStreamId(command.hostId),
  eventSchemas: capacityEventSchemas,
  scope: platformScope,
};

export const imageHandler: CommandHandler<ImageCommand, ImageEvent, ImageState> = {
  name: "maskin.image",
  commandSchema: ImageCommandSchema,
  decider: imageDecider,
  streamId: (command) => imageStreamId(command.name),
  eventSchemas: imageEventSchemas,
  scope: platformScope,
};

/** A hypervisor's SSH port pool is the platform's (like its capacity). */
export const portPoolHandler: CommandHandler<PortCommand, PortEvent, PortPoolState> = {
  name: "maskin.ssh-ports",
  commandSchema: PortCommandSchema,
  decider: portPoolDecider,
  streamId: (command) => portPoolStreamId(command.hostId),
  eventSchemas: portEventSchemas,
  scope: platformScope,
};

/** Only CreateVm derives its scope; executeVmCommand puts the VM's scope in the context for the others. */
export const vmHandler: CommandHandler<VmCommand, VmEvent, VmState> = {
  name: "maskin.vm",
  commandSchema: VmCommandSchema,
  decider: vmDecider,
  streamId: (command) => vmStreamId(command.vmId),
  eventSchemas: vmEventSchemas,
  scope: (command) => (command.type === "CreateVm" ? vmEnvelopeScope(command) : undefined),
};

/** Scope comes from the context; executeDiskImageCommand fills it from the VM or the disk image. */
export const diskImageHandler: CommandHandler<DiskImageCommand, DiskImageEvent, DiskImageState> = {
  name: "maskin.disk-image",
  commandSchema: DiskImageCommandSchema,
  decider: diskImageDecider,
  streamId: (command) => diskImageStreamId(command.datacenter, command.name),
  eventSchemas: diskImageEventSchemas,
};

/** The envelope (scope, datacenter) of a stream's first event; null for an empty stream. */
async function firstEnvelope(store: Pick<CommandStore, "readStream">, streamId: string): Promise<{ scope: Scope; datacenter: string | null } | null> {
  const [first] = await store.readStream(streamId, { from: 0, limit: 1, direction: "forward" });
  return first ? { scope: first.scope, datacenter: first.datacenter } : null;
}

/** Refuses a caller (not the platform) scoped outside `owner`. */
function checkCaller(owner: Scope, caller: Scope | undefined): void {
  if (!caller || caller.tenantId === PLATFORM_TENANT) return;
  for (const field of ["tenantId", "projectId", "environmentId"] as const) {
    const mine = owner[field];
    const theirs = caller[field];
    if (mine !== undefined && theirs !== undefined && mine !== theirs) throw new CommandScopeError(field, mine, theirs);
  }
}

function datacenterOf(input: unknown): string | null {
  const dc = typeof input === "object" && input !== null ? (input as { datacenter?: unknown }).datacenter : undefined;
  return typeof dc === "string" ? dc : null;
}

/** A hypervisor capacity command (`RegisterHypervisor`, `ReserveCapacity`, `ReleaseCapacity`, `Cordon…`, `Drain…`) from raw input. */
export async function executeCapacityCommand(
  store: CommandStore,
  input: CapacityCommandInput | unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<CapacityEvent>> {
  let datacenter = context.datacenter ?? datacenterOf(input);
  if (!datacenter) {
    const command = parseCommand(capacityHandler, input);
    datacenter = (await firstEnvelope(store, hypervisorStreamId(command.hostId)))?.datacenter ?? null;
  }
  return executeCommand(store, capacityHandler, input, { ...context, datacenter }, options);
}

/** `RegisterImageVersion` from raw input. */
export function executeImageCommand(
  store: CommandStore,
  input: ImageCommandInput | unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<ImageEvent>> {
  return executeCommand(store, imageHandler, input, context, options);
}

/**
 * A VM command from raw input. CreateVm is filed under the tenant/project/
 * environment it names; any other command under the VM's own scope (a VM
 * that does not exist is refused by the decider with `vm_not_found`).
 */
export async function executeVmCommand(
  store: CommandStore,
  input: VmCommandInput | unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<VmEvent>> {
  const command = parseCommand(vmHandler, input);
  if (command.type === "CreateVm") return executeCommand(store, vmHandler, command, { ...context, datacenter: context.datacenter ?? command.datacenter }, options);
  const envelope = await firstEnvelope(store, vmStreamId(command.vmId));
  if (envelope) checkCaller(envelope.scope, context.scope);
  const scope = envelope?.scope ?? context.scope ?? platformScope();
  return executeCommand(store, vmHandler, command, { ...context, scope, datacenter: context.datacenter ?? envelope?.datacenter ?? null }, options);
}

/**
 * A disk image command from raw input: filed under the scope of the VM it
 * names (Reference/Release), or for DeleteDiskImage the caller's scope, else
 * the disk image's first event's, else the platform's.
 */
export async function executeDiskImageCommand(
  store: CommandStore,
  input: DiskImageCommandInput | unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<DiskImageEvent>> {
  const command = parseCommand(diskImageHandler, input);
  let scope: Scope | undefined;
  if (command.type === "DeleteDiskImage") {
    scope = context.scope ?? (await firstEnvelope(store, diskImageStreamId(command.datacenter, command.name)))?.scope;
  } else {
    const vm = await firstEnvelope(store, vmStreamId(command.vmId));
    if (vm) checkCaller(vm.scope, context.scope);
    scope = vm?.scope ?? context.scope;
  }
  return executeCommand(store, diskImageHandler, command, { ...context, scope: scope ?? platformScope(), datacenter: context.datacenter ?? command.datacenter }, options);
}

/** A hypervisor's capacity state (initial, `hostId` null, when unregistered) with the stream version. */
export async function loadHypervisor(store: Pick<CommandStore, "readStream">, hostId: string): Promise<{ state: HypervisorState; version: StreamVersion }> {
  const loaded = await loadStream<CapacityEvent>(store, hypervisorStreamId(hostId), capacityEventSchemas);
  return { state: fold(capacityDecider, loaded.events), version: loaded.version };
}

/** An image's versions. */
export async function loadImage(store: Pick<CommandStore, "readStream">, name: string): Promise<{ state: ImageState; version: StreamVersion }> {
  const loaded = await loadStream<ImageEvent>(store, imageStreamId(name), imageEventSchemas);
  return { state: fold(imageDecider, loaded.events), version: loaded.version };
}

/** A disk image (status `absent` when never created) and its references. */
export async function loadDiskImage(
  store: Pick<CommandStore, "readStream">,
  datacenter: string,
  name: string,
): Promise<{ state: DiskImageState; version: StreamVersion }> {
  const loaded = await loadStream<DiskImageEvent>(store, diskImageStreamId(datacenter, name), diskImageEventSchemas);
  return { state: fold(diskImageDecider, loaded.events), version: loaded.version };
}

/** A VM's state (lifecycle null when it does not exist). */
export async function loadVm(store: Pick<CommandStore, "readStream">, vmId: string): Promise<{ state: VmState; version: StreamVersion }> {
  const loaded = await loadStream<VmEvent>(store, vmStreamId(vmId), vmEventSchemas);
  return { state: fold(vmDecider, loaded.events), version: loaded.version };
}

/** An SSH port pool command (`ConfigureSshPortRange`, `AllocateSshPort`, `ReleaseSshPorts`) from raw input. */
export function executePortCommand(
  store: CommandStore,
  input: PortCommandInput | unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<PortEvent>> {
  return executeCommand(store, portPoolHandler, input, context, options);
}

/** A hypervisor's SSH port pool (the default range, nothing held, when never used). */
export async function loadPortPool(store: Pick<CommandStore, "readStream">, hostId: string): Promise<{ state: PortPoolState; version: StreamVersion }> {
  const loaded = await loadStream<PortEvent>(store, portPoolStreamId(hostId), portEventSchemas);
  return { state: fold(portPoolDecider, loaded.events), version: loaded.version };
}
