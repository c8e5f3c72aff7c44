import type { ProvisionRole } from "../../domain/maskin/index.ts";
import { DomainError, isDomainError } from "../../domain/shared/errors.ts";
import type { TaskCommandInput } from "../../domain/task/commands.ts";
import type { ExistingTask } from "../../domain/task/state.ts";
import { defineSaga, sagaPlan, type InlineStep, type WaitStep } from "../runtime/types.ts";
import { hostCommand, hostFact, hostInputOf, loadHost, loadHostWithEvents, loadPool, maskinWork, poolCommand, type MaskinSagaDeps } from "./common.ts";

/**
 * Provisioning a bare-metal host for a project (domain/maskin/README.md,
 * "Provisioning (contract)"): allocate it in its datacenter's pool and start
 * its provisioning, set the one-time boot device to PXE, power it on (the
 * worker reads the BMC first: a host that is on stays on, never cycled),
 * wait for the boot service to serve its iPXE script, wait for the
 * installer's report, set the boot device to disk (no netboot loop), ready.
 *
 * - An unreachable BMC blocks the task (`bmc <hostId>`, hard) while the step
 *   retries with backoff; the next answer that reaches it unblocks it.
 * - The waits read the host's real state when they start (a fetch that came
 *   before the step counts) and again on each HostNetbootFetched /
 *   HostInstallReported of this task. The task's deadline (default 30 min)
 *   bounds them; its failure names the step and "waiting for ...".
 * - An installer that reports failure fails the task with its message.
 * - A task that fails (any reason) marks the host `provision_failed`, so it
 *   can be released (powered off, wiped, returned to the pool); a retry of
 *   such a task cannot resume the host: release and provision again.
 */

export const HOST_PROVISION_KIND = "maskin.host-provision";
export const HOST_PROVISION_DEADLINE_MS = 30 * 60_000;
/** Attempts per step (an unreachable BMC counts: the deadline is the real bound). */
export const HOST_PROVISION_MAX_ATTEMPTS = 10;
export const WAITING_FOR_NETBOOT = "waiting for netboot";
export const WAITING_FOR_INSTALL = "waiting for the installer to report";

export interface HostProvisionInput {
  readonly hostId: string;
  readonly datacenter: string;
  readonly tenantId: string;
  readonly projectId: string;
  readonly environmentId: string | null;
  readonly role: ProvisionRole;
}

function provisionInputOf(task: ExistingTask): HostProvisionInput {
  const { hostId, datacenter } = hostInputOf(task);
  const input = task.input as Partial<HostProvisionInput>;
  if (typeof input.tenantId !== "string" || typeof input.projectId !== "string") {
    throw new DomainError("invalid_task_input", `task ${task.taskId} lacks tenantId/projectId in its input`, { taskId: task.taskId });
  }
  return {
    hostId,
    datacenter,
    tenantId: input.tenantId,
    projectId: input.projectId,
    environmentId: typeof input.environmentId === "string" ? input.environmentId : null,
    role: input.role === "controlplane" ? "controlplane" : "worker",
  };
}

const at = () => new Date().toISOString();

const allocate: InlineStep<MaskinSagaDeps> = {
  title: "Allocate the host to the project",
  async run(task, deps) {
    const input = provisionInputOf(task);
    // The pool decides race-free who gets the host (host_not_free for a second task).
    await poolCommand(deps, task, {
      type: "AllocateHost",
      datacenter: input.datacenter,
      hostId: input.hostId,
      taskId: task.taskId,
      tenantId: input.tenantId,
      projectId: input.projectId,
      environmentId: input.environmentId,
      at: at(),
    });
    try {
      await hostCommand(deps, task, {
        type: "StartProvisioning",
        hostId: input.hostId,
        datacenter: input.datacenter,
        taskId: task.taskId,
        tenantId: input.tenantId,
        projectId: input.projectId,
        environmentId: input.environmentId,
        role: input.role,
        at: at(),
      });
    } catch (error) {
      // The host refuses (being released, or failed and not yet released): give back what this task took.
      if (isDomainError(error)) {
        const held = (await loadPool(deps.store, input.datacenter)).allocations.get(input.hostId);
        if (held?.taskId === task.taskId) {
          await poolCommand(deps, task, { type: "ReturnHostToPool", datacenter: input.datacenter, hostId: input.hostId, taskId: task.taskId, at: at() });
        }
      }
      throw error;
    }
    return { hostId: input.hostId, datacenter: input.datacenter, role: input.role };
  },
};

/** The host as this task's provisioning sees it; refuses when another task holds it now. */
async function ownHost(deps: MaskinSagaDeps, task: ExistingTask) {
  const { hostId } = hostInputOf(task);
  const loaded = await loadHostWithEvents(deps.store, hostId);
  const p = loaded.state.provisioning;
  if (!p || p.taskId !== task.taskId) {
    throw new DomainError("host_task_mismatch", `host ${hostId} is no longer provisioned by task ${task.taskId}`, { hostId, taskId: task.taskId });
  }
  return { ...loaded, provisioning: p };
}

const waitNetboot: WaitStep<MaskinSagaDeps> = {
  title: "Wait for the host to fetch its netboot script",
  waitingFor: WAITING_FOR_NETBOOT,
  completesOn: [hostFact("HostNetbootFetched")],
  async check(task, deps) {
    const host = await ownHost(deps, task);
    if (host.state.state === "provisioning" && host.provisioning.stage === "allocated") {
      // Boot device and power are set: the host is now expected to netboot.
      await hostCommand(deps, task, { type: "RecordNetbootRequested", hostId: hostInputOf(task).hostId, taskId: task.taskId, at: at() });
    }
    const fetchedAt = host.provisioning.netbootFetchedAt;
    return fetchedAt ? { netbootFetchedAt: fetchedAt, stage: host.provisioning.stage } : null;
  },
};

const waitInstall: WaitStep<MaskinSagaDeps> = {
  title: "Wait for the installer's report",
  waitingFor: WAITING_FOR_INSTALL,
  completesOn: [hostFact("HostInstallReported")],
  async check(task, deps) {
    const host = await ownHost(deps, task);
    const stage = host.provisioning.stage;
    if (stage === "installed") return { installedAt: host.provisioning.installReportedAt, stage };
    if (stage === "install-failed") {
      const report = host.events.filter((e) => e.type === "HostInstallReported" && e.data.taskId === task.taskId).at(-1);
      const message = report?.type === "HostInstallReported" && report.data.message ? report.data.message : "no message";
      throw new DomainError("install_failed", `the installer reported failure: ${message}`, { hostId: hostInputOf(task).hostId });
    }
    return null;
  },
};

const ready: InlineStep<MaskinSagaDeps> = {
  title: "Mark the host ready",
  async run(task, deps) {
    const { hostId } = hostInputOf(task);
    await hostCommand(deps, task, { type: "CompleteProvisioning", hostId, taskId: task.taskId, at: at() });
    return { hostId, state: "ready", nextBoot: "disk" };
  },
};

/** The task failed or was cancelled: the host is marked provision_failed (then it can be released). */
async function markFailed(task: ExistingTask, deps: MaskinSagaDeps, reason: string): Promise<void> {
  const { hostId } = hostInputOf(task);
  const host = await loadHost(deps.store, hostId);
  if (host.state !== "provisioning" || host.provisioning?.taskId !== task.taskId) return;
  try {
    await hostCommand(deps, task, { type: "FailProvisioning", hostId, taskId: task.taskId, reason: reason.slice(0, 2000) || "failed", at: at() });
  } catch (error) {
    if (!isDomainError(error)) throw error; // the host moved on meanwhile: nothing to mark
  }
}

const steps = {
  allocate: { ...allocate, compensate: (task: ExistingTask, deps: MaskinSagaDeps) => markFailed(task, deps, `task cancelled: ${task.cancellation?.reason ?? "cancelled"}`) },
  "boot-pxe": maskinWork("Set the one-time boot device to PXE", "bootdev", () => ({ device: "pxe" })),
  "power-on": maskinWork("Power the host on", "power", () => ({ operation: "on" })),
  "wait-netboot": waitNetboot,
  "wait-install": waitInstall,
  "boot-disk": maskinWork("Set the boot device to disk", "bootdev", () => ({ device: "disk" })),
  ready,
};

export const hostProvisionSaga = defineSaga<MaskinSagaDeps>({
  kind: HOST_PROVISION_KIND,
  steps,
  onFailed: (task, deps) => markFailed(task, deps, task.failure?.reason ?? "provisioning failed"),
});

/** The CreateTask for provisioning `hostId`; scoped to the project/environment it is for. */
export function hostProvisionTask(options: HostProvisionInput & { readonly taskId: string; readonly hostName?: string; readonly correlationId: string; readonly now: Date; readonly deadlineMs?: number }): TaskCommandInput {
  const { taskId, now, correlationId, hostName, deadlineMs, ...input } = options;
  return {
    type: "CreateTask",
    taskId,
    kind: HOST_PROVISION_KIND,
    title: `Provision host ${hostName ?? input.hostId} (${input.role})`,
    resource: { type: "host", id: input.hostId },
    scope: { tenantId: input.tenantId, projectId: input.projectId, environmentId: input.environmentId },
    steps: sagaPlan(hostProvisionSaga),
    deadline: new Date(now.getTime() + (deadlineMs ?? HOST_PROVISION_DEADLINE_MS)).toISOString(),
    maxAttempts: HOST_PROVISION_MAX_ATTEMPTS,
    input: { ...input, correlationId },
    at: now.toISOString(),
  };
}
