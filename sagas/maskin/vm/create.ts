import { setTimeout as sleep } from "node:timers/promises";
import { loadDiskImage, loadHypervisor, loadPortPool } from "../../../commands/maskin/vm/index.ts";
import {
  candidateFrom,
  MASKIN_HV_STREAM_PREFIX,
  placeVm,
  portsOfVm,
  USER_NETWORK,
  type PlacementCandidate,
  type PlacementDecision,
  type PlacementRejected,
  type VmState,
} from "../../../domain/maskin/vm/index.ts";
import { DomainError, isDomainError } from "../../../domain/shared/errors.ts";
import type { ExistingTask } from "../../../domain/task/state.ts";
import { defineSaga, waitBlocked, type InlineStep, type WaitCompletion, type WaitStep, type WorkStep } from "../../runtime/types.ts";
import {
  at,
  bootImageOf,
  capacityCommand,
  diskCommand,
  directoryOf,
  existingVm,
  hypervisorWork,
  portCommand,
  vmCommand,
  vmInputOf,
  vmStartPayload,
  vmTask,
  type VmSagaDeps,
  type VmTaskScope,
} from "./common.ts";

/**
 * Creating a VM (the VM was requested by CreateVm; this task brings it up):
 *
 * 1. `place` (wait): placeVm over the datacenter's hypervisors (their own
 *    capacity streams), ReserveCapacity on the chosen one (a lost race —
 *    `insufficient_capacity`, `hypervisor_cordoned`, or an anti-affinity
 *    group over its maximum because two VMs reserved at once — is placed
 *    again), then RecordPlacement with the explanation. Nothing fits:
 *    RecordPlacementBlocked and the task is blocked on `capacity <dc>`
 *    (soft) while it keeps waiting; any capacity fact of a hypervisor of the
 *    datacenter (released, reserved, registered, uncordoned, changed) checks
 *    again the VM that has waited longest there (deps.vms
 *    `oldestBlockedPlacement`, from the vms read model). A reservation
 *    wakes the next one, so freed room is handed down the queue in order; a
 *    big VM at the head is not overtaken by smaller ones behind it.
 * 2. `network` (inline): only the `user` network exists; one SSH port per
 *    NIC from the hypervisor's port pool.
 * 3. `disk` (inline): ReferenceDiskImage (CreateIfNotExist creates it;
 *    FailIfNotExist on a missing one fails the task with
 *    `disk_image_not_found`); RecordDiskAttached with the template warnings.
 * 4. `disk-prepare`, 5. `seed`, 6. `start`: hypervisor worker actions on the
 *    chosen host (target = host id).
 * 7. `running` (inline): RecordVmStarted.
 *
 * A failed task fails the VM (FailVm) and gives back what it took: the
 * capacity reservation, the SSH ports and the disk image reference.
 *
 * Seed: the tenant's SSH public keys from the request; no platform debug key
 * is generated (there is no secret store to keep its private half in, and a
 * private key never goes into an event): a later issue can add it with one.
 */

export const VM_CREATE_KIND = "maskin.vm-create";
export const VM_CREATE_DEADLINE_MS = 30 * 60_000;
export const VM_CREATE_MAX_ATTEMPTS = 5;
export const WAITING_FOR_CAPACITY = "waiting for capacity";
/** Placement attempts within one check (each lost race re-reads the hypervisors). */
const PLACEMENT_ROUNDS = 8;

export function capacityDependency(datacenter: string): string {
  return `capacity ${datacenter}`;
}

/** Why nothing fits, in one line: each hypervisor's first failed filter. */
export function blockedReason(decision: Extract<PlacementDecision, { outcome: "unplaceable" }>, state: VmState): string {
  const r = state.vm!.resources;
  const wanted = `${r.vcpus} vCPU, ${r.memoryMiB} MiB, ${r.diskGiB} GiB`;
  const inDc = decision.rejected.filter((x) => x.reason !== "datacenter");
  if (inDc.length === 0) return `no hypervisor in ${state.vm!.datacenter} (${wanted})`;
  return `no hypervisor in ${state.vm!.datacenter} fits ${wanted} (${decision.reason}): ${inDc.map((x) => `${x.hypervisor}: ${x.reason} ${x.detail}`).join("; ")}`;
}

async function candidatesIn(deps: VmSagaDeps, datacenter: string): Promise<Array<{ candidate: PlacementCandidate; order: string[] }>> {
  const hostIds = await directoryOf(deps).hypervisorsIn(datacenter);
  const loaded = await Promise.all(hostIds.map((hostId) => loadHypervisor(deps.store, hostId)));
  return loaded
    .map(({ state }) => state)
    .filter((state) => state.hostId !== null)
    .map((state) => ({ candidate: candidateFrom(state, [USER_NETWORK]), order: [...state.reservations.keys()] }));
}

const LISTED_WITHIN_MS = 10_000;

async function listed(deps: VmSagaDeps, datacenter: string, hostId: string): Promise<void> {
  const deadline = Date.now() + LISTED_WITHIN_MS;
  while (!(await directoryOf(deps).hypervisorsIn(datacenter)).includes(hostId) && Date.now() < deadline) await sleep(100);
}

function sameRejections(a: readonly PlacementRejected[], b: readonly PlacementRejected[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Two VMs of one anti-affinity group may reserve on the same hypervisor at
 * once (the capacity stream decides resources, not groups). Afterwards both
 * see the same order of reservations: the first `maxPerHypervisor` of the
 * group keep theirs, a later one gives it back and is placed again.
 */
async function overAntiAffinity(deps: VmSagaDeps, state: VmState, hostId: string): Promise<boolean> {
  const anti = state.vm!.antiAffinity;
  if (!anti) return false;
  const hv = (await loadHypervisor(deps.store, hostId)).state;
  const members = [...hv.reservations.values()].filter((r) => r.groups.includes(anti.group)).map((r) => r.vmId);
  return members.indexOf(state.vm!.vmId) >= anti.maxPerHypervisor;
}

const place: WaitStep<VmSagaDeps> = {
  title: "Place the VM on a hypervisor",
  waitingFor: WAITING_FOR_CAPACITY,
  completesOn: (["CapacityReleased", "CapacityReserved", "HypervisorRegistered", "HypervisorUncordoned", "HypervisorCapacityChanged"] as const).map(
    (eventType): WaitCompletion<VmSagaDeps> => ({
      eventType,
      streamPrefix: MASKIN_HV_STREAM_PREFIX,
      async taskIdOf(event, deps) {
        const hostId = (event.data as { hostId?: unknown } | null)?.hostId;
        if (typeof hostId !== "string") return null;
        const hv = (await loadHypervisor(deps.store, hostId)).state;
        if (!hv.datacenter) return null;
        // A new hypervisor is listed by the read model a moment after its event: wait for it (bounded), or the check would not see it.
        if (eventType === "HypervisorRegistered") await listed(deps, hv.datacenter, hostId);
        return directoryOf(deps).oldestBlockedPlacement(hv.datacenter);
      },
    }),
  ),
  async check(task, deps) {
    const { vmId } = vmInputOf(task);
    let state = await existingVm(deps, vmId);
    const vm = state.vm;
    if (state.placement && state.lifecycle !== "placing" && state.lifecycle !== "requested") {
      if (state.lifecycle !== "provisioning") throw new DomainError("vm_invalid_state", `VM ${vmId} is ${state.lifecycle}: it cannot be created`, { vmId, state: state.lifecycle });
      return { hostId: state.placement.chosen.hostId, hypervisor: state.placement.chosen.hypervisor };
    }
    if (state.lifecycle === "requested") await vmCommand(deps, task, { type: "StartPlacement", vmId, taskId: task.taskId, at: at() });
    else if (state.lifecycle !== "placing") throw new DomainError("vm_invalid_state", `VM ${vmId} is ${state.lifecycle}: it cannot be placed`, { vmId, state: state.lifecycle });
    const request = {
      vmId,
      datacenter: vm.datacenter,
      resources: vm.resources,
      networks: vm.nics.map((n) => n.network),
      antiAffinity: vm.antiAffinity,
      spreadGroup: vm.spreadGroup,
    };
    const groups = [...new Set([vm.antiAffinity?.group, vm.spreadGroup].filter((g): g is string => typeof g === "string"))];
    let decision: PlacementDecision | null = null;
    for (let round = 0; round < PLACEMENT_ROUNDS; round++) {
      const loaded = await candidatesIn(deps, vm.datacenter);
      // A reservation left by an earlier check that stopped before RecordPlacement: given back, then placed afresh.
      const stale = loaded.filter((c) => c.order.includes(vmId));
      for (const c of stale) await capacityCommand(deps, task, { type: "ReleaseCapacity", hostId: c.candidate.hostId, vmId, taskId: task.taskId, at: at() });
      const candidates = stale.length > 0 ? (await candidatesIn(deps, vm.datacenter)).map((c) => c.candidate) : loaded.map((c) => c.candidate);
      decision = placeVm(request, candidates);
      if (decision.outcome !== "placed") break;
      const hostId = decision.chosen.hostId;
      try {
        await capacityCommand(deps, task, { type: "ReserveCapacity", hostId, vmId, resources: vm.resources, groups, taskId: task.taskId, at: at() });
      } catch (error) {
        if (isDomainError(error) && (error.code === "insufficient_capacity" || error.code === "hypervisor_cordoned")) continue; // lost a race: place again
        throw error;
      }
      if (await overAntiAffinity(deps, state, hostId)) {
        await capacityCommand(deps, task, { type: "ReleaseCapacity", hostId, vmId, taskId: task.taskId, at: at() });
        continue;
      }
      await vmCommand(deps, task, { type: "RecordPlacement", vmId, chosen: decision.chosen, rejected: [...decision.rejected], taskId: task.taskId, at: at() });
      return { hostId, hypervisor: decision.chosen.hypervisor, rejected: decision.rejected.length };
    }
    if (!decision || decision.outcome === "placed") {
      // Lost every round to other VMs: a transient condition, the step is tried again.
      throw new Error(`VM ${vmId}: placement lost ${PLACEMENT_ROUNDS} races in a row`);
    }
    const reason = blockedReason(decision, state);
    state = await existingVm(deps, vmId);
    if (!state.blocked || state.blocked.reason !== reason || !sameRejections(state.blocked.rejected, decision.rejected)) {
      await vmCommand(deps, task, { type: "RecordPlacementBlocked", vmId, reason, blocking: decision.blocking, rejected: [...decision.rejected], taskId: task.taskId, at: at() });
    }
    return waitBlocked({ dependency: capacityDependency(vm.datacenter), kind: decision.blocking, reason });
  },
};

const network: InlineStep<VmSagaDeps> = {
  title: "Attach the network and allocate SSH ports",
  async run(task, deps) {
    const { vmId } = vmInputOf(task);
    const state = await existingVm(deps, vmId);
    const hostId = state.placement?.chosen.hostId;
    if (!hostId) throw new DomainError("vm_not_placed", `VM ${vmId} has no hypervisor`, { vmId });
    const unknown = state.vm.nics.filter((n) => n.network !== USER_NETWORK).map((n) => n.network);
    if (unknown.length > 0) {
      throw new DomainError("network_not_available", `network ${[...new Set(unknown)].join(", ")} does not exist; only "${USER_NETWORK}" (QEMU user-mode) does`, { vmId, networks: unknown });
    }
    for (const nic of state.vm.nics) await portCommand(deps, task, { type: "AllocateSshPort", hostId, vmId, nicIndex: nic.index, taskId: task.taskId, at: at() });
    const ports = portsOfVm((await loadPortPool(deps.store, hostId)).state, vmId);
    return { network: USER_NETWORK, sshPorts: ports };
  },
};

const disk: InlineStep<VmSagaDeps> = {
  title: "Reference the disk image",
  async run(task, deps) {
    const { vmId } = vmInputOf(task);
    const state = await existingVm(deps, vmId);
    const d = state.vm.disk;
    await diskCommand(deps, task, { type: "ReferenceDiskImage", datacenter: state.vm.datacenter, name: d.name, vmId, mode: d.mode, template: d.template, taskId: task.taskId, at: at() });
    const image = (await loadDiskImage(deps.store, state.vm.datacenter, d.name)).state;
    const warnings = [...(image.references.get(vmId)?.warnings ?? [])];
    await vmCommand(deps, task, { type: "RecordDiskAttached", vmId, diskName: d.name, warnings, taskId: task.taskId, at: at() });
    return { disk: d.name, generation: image.generation, warnings };
  },
};

/** The VM as a worker step sees it; a VM being deleted meanwhile fails the task. */
async function provisioningVm(deps: VmSagaDeps, task: ExistingTask) {
  const state = await existingVm(deps, vmInputOf(task).vmId);
  if (state.lifecycle !== "provisioning" && state.lifecycle !== "running") {
    throw new DomainError("vm_invalid_state", `VM ${state.vm.vmId} is ${state.lifecycle}: creation stops`, { vmId: state.vm.vmId, state: state.lifecycle });
  }
  return state;
}

const diskPrepare: WorkStep<VmSagaDeps> = {
  title: "Prepare the disk on the hypervisor",
  async resolveWork(task, deps) {
    const state = await provisioningVm(deps, task);
    const vm = state.vm;
    const image = (await loadDiskImage(deps.store, vm.datacenter, vm.disk.name)).state;
    if (image.status !== "active" && image.status !== "terminating") throw new DomainError("disk_image_not_found", `disk image ${vm.disk.name} is ${image.status}`, { name: vm.disk.name });
    const template = image.template!;
    const ref = await bootImageOf(deps, state);
    const imageRef = ref ? { name: ref.name, version: ref.version, format: ref.format, digest: ref.digest, source: ref.source, boot: ref.boot } : null;
    return hypervisorWork(state, "disk-prepare", { vmId: vm.vmId, disk: { name: vm.disk.name, generation: image.generation, sizeGiB: template.sizeGiB }, image: imageRef });
  },
};

/** Seed input: hostname = the VM's name, the tenant's SSH public keys and user data from the request. */
export interface VmSeedInput {
  readonly sshAuthorizedKeys: readonly string[];
  readonly userData?: string;
}

const seed: WorkStep<VmSagaDeps> = {
  title: "Build the seed (cloud-init)",
  async resolveWork(task, deps) {
    const state = await provisioningVm(deps, task);
    const input = task.input as Partial<VmSeedInput>;
    const keys = Array.isArray(input.sshAuthorizedKeys) ? input.sshAuthorizedKeys.filter((k): k is string => typeof k === "string") : [];
    return hypervisorWork(state, "seed-build", {
      vmId: state.vm.vmId,
      hostname: state.vm.name,
      instanceId: state.vm.vmId,
      sshAuthorizedKeys: keys,
      nicMacs: state.vm.nics.map((n) => n.mac),
      ...(typeof input.userData === "string" ? { userData: input.userData } : {}),
    });
  },
};

const start: WorkStep<VmSagaDeps> = {
  title: "Start the VM",
  async resolveWork(task, deps) {
    const state = await provisioningVm(deps, task);
    return hypervisorWork(state, "vm-start", await vmStartPayload(deps, state));
  },
};

const running: InlineStep<VmSagaDeps> = {
  title: "Mark the VM running",
  async run(task, deps) {
    const { vmId } = vmInputOf(task);
    await vmCommand(deps, task, { type: "RecordVmStarted", vmId, taskId: task.taskId, at: at() });
    const state = await existingVm(deps, vmId);
    return { vmId, state: state.lifecycle, hostId: state.placement?.chosen.hostId ?? null };
  },
};

/** Gives back what a VM took (capacity, SSH ports, disk image reference); each command is idempotent. */
export async function releaseVmResources(deps: VmSagaDeps, task: ExistingTask, state: VmState): Promise<{ diskImageDeleted: boolean }> {
  const vm = state.vm!;
  const hostId = state.placement?.chosen.hostId ?? null;
  if (hostId) {
    await capacityCommand(deps, task, { type: "ReleaseCapacity", hostId, vmId: vm.vmId, taskId: task.taskId, at: at() });
    await portCommand(deps, task, { type: "ReleaseSshPorts", hostId, vmId: vm.vmId, taskId: task.taskId, at: at() });
  }
  const result = await diskCommand(deps, task, { type: "ReleaseDiskImageReference", datacenter: vm.datacenter, name: vm.disk.name, vmId: vm.vmId, taskId: task.taskId, at: at() });
  return { diskImageDeleted: result.events.some((e) => e.type === "DiskImageDeleted") };
}

/** The task failed or was cancelled: the VM fails and gives back what this task took. */
async function failVm(task: ExistingTask, deps: VmSagaDeps, reason: string): Promise<void> {
  const { vmId } = vmInputOf(task);
  const state = await existingVm(deps, vmId).catch((error) => {
    if (isDomainError(error)) return null;
    throw error;
  });
  if (!state) return;
  if (state.lifecycle === "requested" || state.lifecycle === "placing" || state.lifecycle === "provisioning") {
    await vmCommand(deps, task, { type: "FailVm", vmId, reason: reason.slice(0, 2000) || "failed", taskId: task.taskId, at: at() });
  }
  if (state.lifecycle === "deleting" || state.lifecycle === "deleted") return; // the delete task releases
  await releaseVmResources(deps, task, state);
}

export const vmCreateSaga = defineSaga<VmSagaDeps>({
  kind: VM_CREATE_KIND,
  steps: {
    place: { ...place, compensate: (task, deps) => failVm(task, deps, `task cancelled: ${task.cancellation?.reason ?? "cancelled"}`) },
    network,
    disk,
    "disk-prepare": diskPrepare,
    seed,
    start,
    running,
  },
  onFailed: (task, deps) => failVm(task, deps, task.failure?.reason ?? "creation failed"),
});

/** The CreateTask that brings up a VM requested with CreateVm (same task id as its CreateVm). */
export function vmCreateTask(options: {
  readonly taskId: string;
  readonly vmId: string;
  readonly vmName: string;
  readonly datacenter: string;
  readonly scope: VmTaskScope;
  readonly seed: VmSeedInput;
  readonly correlationId: string;
  readonly now: Date;
  readonly deadlineMs?: number;
}) {
  return vmTask(vmCreateSaga, {
    ...options,
    title: `Create VM ${options.vmName}`,
    deadlineMs: options.deadlineMs ?? VM_CREATE_DEADLINE_MS,
    maxAttempts: VM_CREATE_MAX_ATTEMPTS,
    input: { sshAuthorizedKeys: [...options.seed.sshAuthorizedKeys], ...(options.seed.userData !== undefined ? { userData: options.seed.userData } : {}) },
  });
}
