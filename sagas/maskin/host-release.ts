import type { CommandStore } from "../../commands/pipeline.ts";
import { executeHostCommand } from "../../commands/maskin/index.ts";
import { DomainError } from "../../domain/shared/errors.ts";
import { PLATFORM_TENANT, type Actor } from "../../domain/shared/envelope.ts";
import type { TaskCommandInput, TaskScope } from "../../domain/task/commands.ts";
import type { ExistingTask } from "../../domain/task/state.ts";
import { defineSaga, sagaPlan, type InlineStep, type WaitStep } from "../runtime/types.ts";
import { hostCommand, hostFact, hostInputOf, loadHost, loadHostWithEvents, maskinWork, poolCommand, type MaskinSagaDeps } from "./common.ts";

/**
 * Releasing a host (domain/maskin/README.md, "Release and wipe"): power it
 * off, record the wipe request (from then on the boot service answers this
 * host's netboot with the wipe image and a one-time wipe token), set the
 * one-time boot device to PXE, power it on, wait for the wiper's report
 * (HostWipeReported of this task), make sure it is off, and give it back to
 * the pool (CompleteRelease, which the host refuses unless this task's wipe
 * succeeded, + ReturnHostToPool). A wiped host stays off; the one-time PXE
 * flag was used by the wipe boot and the next provisioning sets it again.
 *
 * The host is put into `releasing` by whoever creates the task
 * (`beginHostRelease`, before CreateTask), so that a release the host refuses
 * (being provisioned by a running task) never starts a task that would power
 * it off. The `request-wipe` and `return` steps ask again (idempotent) so an
 * interrupted creation still converges. A host that is `available` (never
 * provisioned, or released already) stays available and is wiped all the
 * same; while its wipe runs, provisioning it is refused.
 *
 * - An unreachable BMC blocks the task (`bmc <hostId>`, hard) while the step
 *   retries, as in provisioning.
 * - The wiper reporting failure fails the task with its words; the host stays
 *   `releasing` and a new release (another task) may take over.
 * - Every step may run again (restart, redelivery): RequestWipe of the same
 *   task is a no-op, the worker's power-on reads the host's wipe facts first
 *   (a wipe that netbooted or reported means the power-on took effect), the
 *   wait reads the real state when it starts.
 * Default deadline 2 h: wiping disks takes a while (the lab's 64 MiB: seconds).
 */

export const HOST_RELEASE_KIND = "maskin.host-release";
export const HOST_RELEASE_DEADLINE_MS = 2 * 60 * 60_000;
export const WAITING_FOR_WIPE = "waiting for the wipe to report";

const at = () => new Date().toISOString();

const requestWipe: InlineStep<MaskinSagaDeps> = {
  title: "Ask for the host's disks to be wiped (the boot service serves the wipe image)",
  async run(task, deps) {
    const { hostId, datacenter } = hostInputOf(task);
    // Again, in case the task was created without beginHostRelease having recorded it (idempotent).
    await hostCommand(deps, task, { type: "StartRelease", hostId, taskId: task.taskId, at: at() });
    await hostCommand(deps, task, { type: "RequestWipe", hostId, datacenter, taskId: task.taskId, at: at() });
    return { hostId, wipe: "requested" };
  },
};

async function ownWipe(deps: MaskinSagaDeps, task: ExistingTask) {
  const { hostId } = hostInputOf(task);
  const loaded = await loadHostWithEvents(deps.store, hostId);
  const wipe = loaded.state.wipe ?? null;
  if (!wipe || wipe.taskId !== task.taskId) {
    throw new DomainError("host_task_mismatch", `the wipe of host ${hostId} is no longer this task's (${task.taskId})`, { hostId, taskId: task.taskId, wipeTaskId: wipe?.taskId ?? null });
  }
  return { ...loaded, wipe };
}

const waitWipe: WaitStep<MaskinSagaDeps> = {
  title: "Wait for the wiper's report",
  waitingFor: WAITING_FOR_WIPE,
  completesOn: [hostFact("HostWipeReported")],
  async check(task, deps) {
    const { wipe } = await ownWipe(deps, task);
    if (wipe.stage === "wiped") return { wipedAt: wipe.reportedAt, devices: [...wipe.devices], bytesWiped: wipe.bytesWiped };
    if (wipe.stage === "wipe-failed") {
      throw new DomainError("wipe_failed", `the wiper reported failure: ${wipe.message || "no message"}`, { hostId: hostInputOf(task).hostId });
    }
    return null;
  },
};

const giveBack: InlineStep<MaskinSagaDeps> = {
  title: "Return the host to the pool",
  async run(task, deps) {
    const { hostId, datacenter } = hostInputOf(task);
    await hostCommand(deps, task, { type: "StartRelease", hostId, taskId: task.taskId, at: at() });
    await hostCommand(deps, task, { type: "CompleteRelease", hostId, taskId: task.taskId, at: at() });
    await poolCommand(deps, task, { type: "ReturnHostToPool", datacenter, hostId, taskId: task.taskId, at: at() });
    return { hostId, state: "available" };
  },
};

export const hostReleaseSaga = defineSaga<MaskinSagaDeps>({
  kind: HOST_RELEASE_KIND,
  steps: {
    "power-off": maskinWork("Power the host off", "power", () => ({ operation: "off" })),
    "request-wipe": requestWipe,
    "boot-pxe": maskinWork("Set the one-time boot device to PXE (the wipe image)", "bootdev", () => ({ device: "pxe" })),
    "power-on": maskinWork("Power the host on to netboot the wiper", "power", () => ({ operation: "on" })),
    "wait-wipe": waitWipe,
    "power-off-wiped": maskinWork("Make sure the wiped host is off", "power", () => ({ operation: "off" })),
    return: giveBack,
  },
});

/**
 * Puts the host into `releasing` for `taskId` and returns the scope its
 * release task belongs to (the project that held it; the platform's for a
 * host nobody holds). Throws the host's DomainError (`host_not_releasable`)
 * when it is being provisioned or released by another task.
 */
export async function beginHostRelease(
  store: CommandStore,
  options: { readonly hostId: string; readonly taskId: string; readonly actor: Actor; readonly correlationId: string; readonly now: Date },
): Promise<TaskScope> {
  const before = await loadHost(store, options.hostId);
  const p = before.provisioning;
  const scope: TaskScope =
    p && before.state !== "available" ? { tenantId: p.tenantId, projectId: p.projectId, environmentId: p.environmentId } : { tenantId: PLATFORM_TENANT, projectId: null, environmentId: null };
  await executeHostCommand(
    store,
    { type: "StartRelease", hostId: options.hostId, taskId: options.taskId, at: options.now.toISOString() },
    { actor: options.actor, correlationId: options.correlationId, scope: { tenantId: PLATFORM_TENANT } },
  );
  return scope;
}

export function hostReleaseTask(options: {
  readonly taskId: string;
  readonly hostId: string;
  readonly hostName?: string;
  readonly datacenter: string;
  readonly scope: TaskScope;
  readonly correlationId: string;
  readonly now: Date;
  readonly deadlineMs?: number;
}): TaskCommandInput {
  return {
    type: "CreateTask",
    taskId: options.taskId,
    kind: HOST_RELEASE_KIND,
    title: `Release host ${options.hostName ?? options.hostId}`,
    resource: { type: "host", id: options.hostId },
    scope: options.scope,
    steps: sagaPlan(hostReleaseSaga),
    deadline: new Date(options.now.getTime() + (options.deadlineMs ?? HOST_RELEASE_DEADLINE_MS)).toISOString(),
    maxAttempts: 10,
    input: { hostId: options.hostId, datacenter: options.datacenter, correlationId: options.correlationId },
    at: options.now.toISOString(),
  };
}
