import { loadDiskImage, loadVm } from "../../../commands/maskin/vm/index.ts";
import { diskImageEventSchemas, diskImageStreamId, MASKIN_DISK_STREAM_PREFIX, type DiskImageEvent } from "../../../domain/maskin/vm/index.ts";
import { loadStream } from "../../../commands/pipeline.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import type { TaskCommandInput } from "../../../domain/task/commands.ts";
import { defineSaga, type InlineStep, type SagaTrigger, type WorkStep } from "../../runtime/types.ts";
import { at, existingVm, HYPERVISOR_SERVICE, hypervisorWork, vmCommand, vmInputOf, vmTask, type VmSagaDeps, type VmTaskScope } from "./common.ts";
import { releaseVmResources } from "./create.ts";

/**
 * Deleting a VM: DeleteVm (desired deleted, lifecycle deleting) → vm-destroy
 * on its hypervisor (only planned for a VM that was placed) → release the
 * capacity, the SSH ports and the disk image reference → CompleteVmDeletion.
 *
 * Removing the disk image's files is not a step of this task: it follows the
 * fact `DiskImageDeleted` (the last reference released from a terminating
 * disk image, or a DeleteDiskImage of an unreferenced one), which starts a
 * `maskin.disk-image-remove` task (trigger below): disk-remove on the
 * hypervisor of the VM that held the last reference. A plan is fixed when a
 * task is made, and whether this deletion deletes the disk image is only
 * known when its reference is released.
 */

export const VM_DELETE_KIND = "maskin.vm-delete";
export const DISK_IMAGE_REMOVE_KIND = "maskin.disk-image-remove";
export const VM_DELETE_DEADLINE_MS = 15 * 60_000;

const deleteVm: InlineStep<VmSagaDeps> = {
  title: "Mark the VM deleting",
  async run(task, deps) {
    const { vmId } = vmInputOf(task);
    await vmCommand(deps, task, { type: "DeleteVm", vmId, taskId: task.taskId, at: at() });
    const state = await existingVm(deps, vmId);
    return { vmId, hostId: state.placement?.chosen.hostId ?? null };
  },
};

const destroy: WorkStep<VmSagaDeps> = {
  title: "Destroy the VM on its hypervisor",
  async resolveWork(task, deps) {
    const state = await existingVm(deps, vmInputOf(task).vmId);
    return hypervisorWork(state, "vm-destroy", { vmId: state.vm.vmId });
  },
};

const release: InlineStep<VmSagaDeps> = {
  title: "Release capacity, SSH ports and the disk image reference",
  async run(task, deps) {
    const state = await existingVm(deps, vmInputOf(task).vmId);
    const { diskImageDeleted } = await releaseVmResources(deps, task, state);
    const disk = (await loadDiskImage(deps.store, state.vm.datacenter, state.vm.disk.name)).state;
    return { diskImage: state.vm.disk.name, diskImageStatus: disk.status, diskImageDeleted, diskImageReferences: disk.references.size };
  },
};

const deleted: InlineStep<VmSagaDeps> = {
  title: "Mark the VM deleted",
  async run(task, deps) {
    const { vmId } = vmInputOf(task);
    await vmCommand(deps, task, { type: "CompleteVmDeletion", vmId, taskId: task.taskId, at: at() });
    return { vmId, state: "deleted" };
  },
};

export const vmDeleteSaga = defineSaga<VmSagaDeps>({
  kind: VM_DELETE_KIND,
  steps: { delete: deleteVm, destroy, release, deleted },
});

/** The CreateTask deleting a VM; a VM never placed has no process to destroy (`placed` false: no destroy step). */
export function vmDeleteTask(options: {
  readonly taskId: string;
  readonly vmId: string;
  readonly vmName: string;
  readonly datacenter: string;
  readonly scope: VmTaskScope;
  readonly placed: boolean;
  readonly correlationId: string;
  readonly now: Date;
}): TaskCommandInput {
  return vmTask(vmDeleteSaga, {
    ...options,
    title: `Delete VM ${options.vmName}`,
    deadlineMs: VM_DELETE_DEADLINE_MS,
    maxAttempts: 5,
    steps: options.placed ? ["delete", "destroy", "release", "deleted"] : ["delete", "release", "deleted"],
  });
}

// ---- disk image removal (started by DiskImageDeleted) ----

interface DiskRemoveInput {
  readonly datacenter: string;
  readonly name: string;
  readonly generation: number;
}

function diskRemoveInputOf(input: Readonly<Record<string, unknown>>, taskId: string): DiskRemoveInput {
  const { datacenter, name, generation } = input as Partial<DiskRemoveInput>;
  if (typeof datacenter !== "string" || typeof name !== "string" || typeof generation !== "number") {
    throw new DomainError("invalid_task_input", `task ${taskId} lacks datacenter/name/generation`, { taskId });
  }
  return { datacenter, name, generation };
}

/** The hypervisor holding the generation's files: that of the last VM that referenced it (placed). */
async function diskHost(deps: VmSagaDeps, input: DiskRemoveInput): Promise<string> {
  const { events } = await loadStream<DiskImageEvent>(deps.store, diskImageStreamId(input.datacenter, input.name), diskImageEventSchemas);
  let generation = 0;
  const vmIds: string[] = [];
  for (const e of events) {
    if (e.type === "DiskImageCreated") generation = e.data.generation;
    if (generation === input.generation && (e.type === "DiskImageReferenced" || e.type === "DiskImageReferenceReleased")) vmIds.push(e.data.vmId);
  }
  for (const vmId of vmIds.reverse()) {
    const hostId = (await loadVm(deps.store, vmId)).state.placement?.chosen.hostId;
    if (hostId) return hostId;
  }
  throw new DomainError("disk_image_never_placed", `disk image ${input.name} generation ${input.generation} was never used on a hypervisor: nothing to remove`, { ...input });
}

const diskRemove: WorkStep<VmSagaDeps> = {
  title: "Remove the disk image's files from the hypervisor",
  async resolveWork(task, deps) {
    const input = diskRemoveInputOf(task.input, task.taskId);
    const hostId = await diskHost(deps, input);
    return { service: HYPERVISOR_SERVICE, action: "disk-remove", datacenter: input.datacenter, target: hostId, payload: { name: input.name, generation: input.generation } };
  },
};

export const diskImageRemovedTrigger: SagaTrigger = {
  name: "maskin-disk-image-deleted",
  eventType: "DiskImageDeleted",
  streamPrefix: MASKIN_DISK_STREAM_PREFIX,
  start(event, now) {
    const data = event.data as { datacenter?: unknown; name?: unknown; generation?: unknown };
    if (typeof data.datacenter !== "string" || typeof data.name !== "string" || typeof data.generation !== "number") return null;
    const taskId = `disk-remove-${data.datacenter}-${data.name}-g${data.generation}`;
    return {
      type: "CreateTask",
      taskId,
      kind: DISK_IMAGE_REMOVE_KIND,
      title: `Remove disk image ${data.name} (generation ${data.generation}) in ${data.datacenter}`,
      resource: { type: "disk-image", id: `${data.datacenter}/${data.name}` },
      scope: { tenantId: PLATFORM_TENANT, projectId: null, environmentId: null },
      steps: [{ name: "remove", title: diskRemove.title }],
      deadline: new Date(now.getTime() + VM_DELETE_DEADLINE_MS).toISOString(),
      maxAttempts: 5,
      input: { datacenter: data.datacenter, name: data.name, generation: data.generation, correlationId: event.correlationId },
      at: now.toISOString(),
    };
  },
};

export const diskImageRemoveSaga = defineSaga<VmSagaDeps>({
  kind: DISK_IMAGE_REMOVE_KIND,
  steps: { remove: diskRemove },
  triggers: [diskImageRemovedTrigger],
});
