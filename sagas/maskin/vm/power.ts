import { vmDrift, type VmDrift } from "../../../domain/maskin/vm/index.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import type { TaskCommandInput } from "../../../domain/task/commands.ts";
import type { ExistingTask } from "../../../domain/task/state.ts";
import { defineSaga, type InlineStep, type TaskSaga, type WorkStep } from "../../runtime/types.ts";
import { at, existingVm, hypervisorWork, vmCommand, vmInputOf, vmStartPayload, vmTask, type VmSagaDeps, type VmTaskScope } from "./common.ts";

/**
 * Power of a created VM, and reconciliation of drift:
 *
 * - start: SetVmDesiredState running → vm-start (converges: a running
 *   process answers alreadyRunning) → RecordVmStarted.
 * - stop: SetVmDesiredState stopped → vm-stop (ACPI powerdown, then hard
 *   after `acpiTimeoutMs`, default 30 s) → RecordVmStopped.
 * - reboot: RequestVmReboot (the VM must be running) → vm-reboot.
 * - reconcile: the plan follows the drift seen when the task is made
 *   (vmDrift): not_running → vm-start (+ RecordVmStarted); not_stopped →
 *   vm-stop (+ RecordVmStopped); process_after_delete → vm-destroy; none →
 *   one step that answers "in sync". The worker actions converge, so drift
 *   that resolved meanwhile makes them no-ops.
 */

export const VM_START_KIND = "maskin.vm-start";
export const VM_STOP_KIND = "maskin.vm-stop";
export const VM_REBOOT_KIND = "maskin.vm-reboot";
export const VM_RECONCILE_KIND = "maskin.vm-reconcile";
export const VM_POWER_DEADLINE_MS = 10 * 60_000;
export const DEFAULT_ACPI_TIMEOUT_MS = 30_000;

async function settledVm(deps: VmSagaDeps, task: ExistingTask) {
  const state = await existingVm(deps, vmInputOf(task).vmId);
  if (state.lifecycle !== "running" && state.lifecycle !== "stopped") {
    throw new DomainError("vm_invalid_state", `VM ${state.vm.vmId} is ${state.lifecycle}, not running or stopped`, { vmId: state.vm.vmId, state: state.lifecycle });
  }
  return state;
}

const desired = (value: "running" | "stopped"): InlineStep<VmSagaDeps> => ({
  title: `Set the desired state to ${value}`,
  async run(task, deps) {
    const state = await settledVm(deps, task);
    await vmCommand(deps, task, { type: "SetVmDesiredState", vmId: state.vm.vmId, desired: value, taskId: task.taskId, at: at() });
    return { desired: value };
  },
});

const startWork: WorkStep<VmSagaDeps> = {
  title: "Start the VM",
  async resolveWork(task, deps) {
    const state = await settledVm(deps, task);
    return hypervisorWork(state, "vm-start", await vmStartPayload(deps, state));
  },
};

const stopWork: WorkStep<VmSagaDeps> = {
  title: "Stop the VM (ACPI, then hard)",
  async resolveWork(task, deps) {
    const state = await settledVm(deps, task);
    const timeout = typeof task.input.acpiTimeoutMs === "number" ? task.input.acpiTimeoutMs : DEFAULT_ACPI_TIMEOUT_MS;
    return hypervisorWork(state, "vm-stop", { vmId: state.vm.vmId, acpiTimeoutMs: timeout });
  },
};

const started: InlineStep<VmSagaDeps> = {
  title: "Record the VM running",
  async run(task, deps) {
    const { vmId } = vmInputOf(task);
    await vmCommand(deps, task, { type: "RecordVmStarted", vmId, taskId: task.taskId, at: at() });
    return { vmId, state: "running" };
  },
};

const stopped: InlineStep<VmSagaDeps> = {
  title: "Record the VM stopped",
  async run(task, deps) {
    const { vmId } = vmInputOf(task);
    await vmCommand(deps, task, { type: "RecordVmStopped", vmId, taskId: task.taskId, at: at() });
    return { vmId, state: "stopped" };
  },
};

export const vmStartSaga = defineSaga<VmSagaDeps>({ kind: VM_START_KIND, steps: { desired: desired("running"), start: startWork, started } });
export const vmStopSaga = defineSaga<VmSagaDeps>({ kind: VM_STOP_KIND, steps: { desired: desired("stopped"), stop: stopWork, stopped } });

export const vmRebootSaga = defineSaga<VmSagaDeps>({
  kind: VM_REBOOT_KIND,
  steps: {
    request: {
      title: "Record the reboot request",
      async run(task, deps) {
        const { vmId } = vmInputOf(task);
        await vmCommand(deps, task, { type: "RequestVmReboot", vmId, taskId: task.taskId, at: at() });
        return { vmId };
      },
    },
    reboot: {
      title: "Reset the VM",
      async resolveWork(task, deps) {
        const state = await existingVm(deps, vmInputOf(task).vmId);
        return hypervisorWork(state, "vm-reboot", { vmId: state.vm.vmId });
      },
    },
  },
});

export const vmReconcileSaga = defineSaga<VmSagaDeps>({
  kind: VM_RECONCILE_KIND,
  steps: {
    "in-sync": {
      title: "Desired and observed agree",
      async run(task, deps) {
        const state = await existingVm(deps, vmInputOf(task).vmId);
        return { result: "in sync", drift: vmDrift(state)?.kind ?? null };
      },
    },
    start: startWork,
    started,
    stop: stopWork,
    stopped,
    destroy: {
      title: "Destroy the QEMU process left after deletion",
      async resolveWork(task, deps) {
        const state = await existingVm(deps, vmInputOf(task).vmId);
        return hypervisorWork(state, "vm-destroy", { vmId: state.vm.vmId });
      },
    },
  },
});

/** The reconcile plan for a drift (null: in sync). */
export function reconcileSteps(drift: VmDrift | null): string[] {
  switch (drift?.kind) {
    case "not_running":
      return ["start", "started"];
    case "not_stopped":
      return ["stop", "stopped"];
    case "process_after_delete":
      return ["destroy"];
    default:
      return ["in-sync"];
  }
}

export type VmPowerOperation = "start" | "stop" | "reboot" | "reconcile";
const SAGA_OF: Record<VmPowerOperation, TaskSaga<VmSagaDeps>> = { start: vmStartSaga, stop: vmStopSaga, reboot: vmRebootSaga, reconcile: vmReconcileSaga };

/** The CreateTask for start/stop/reboot/reconcile (reconcile: `drift` decides its plan). */
export function vmPowerTask(options: {
  readonly operation: VmPowerOperation;
  readonly taskId: string;
  readonly vmId: string;
  readonly vmName: string;
  readonly datacenter: string;
  readonly scope: VmTaskScope;
  readonly correlationId: string;
  readonly now: Date;
  readonly drift?: VmDrift | null;
  readonly acpiTimeoutMs?: number;
}): TaskCommandInput {
  const { operation } = options;
  return vmTask(SAGA_OF[operation], {
    ...options,
    title: `${operation[0]!.toUpperCase()}${operation.slice(1)} VM ${options.vmName}`,
    deadlineMs: VM_POWER_DEADLINE_MS,
    maxAttempts: 5,
    ...(operation === "reconcile" ? { steps: reconcileSteps(options.drift ?? null), input: { drift: options.drift?.kind ?? null } } : {}),
    ...(operation === "stop" && options.acpiTimeoutMs !== undefined ? { input: { acpiTimeoutMs: options.acpiTimeoutMs } } : {}),
  });
}
