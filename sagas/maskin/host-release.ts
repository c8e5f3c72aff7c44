import { loadHeld, type CommandStore } from "../../commands/pipeline.ts";
import { executeHostCommand } from "../../commands/maskin/index.ts";
import { taskHandler } from "../../commands/task/index.ts";
import { wipeInProgress, type HostState } from "../../domain/maskin/index.ts";
import { DomainError, isDomainError } from "../../domain/shared/errors.ts";
import { PLATFORM_TENANT, type Actor } from "../../domain/shared/envelope.ts";
import type { TaskCommandInput, TaskScope } from "../../domain/task/commands.ts";
import { isTerminal, type ExistingTask } from "../../domain/task/state.ts";
import { taskStreamId } from "../../domain/task/stream.ts";
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
 * - The wiper reporting failure fails the task with its words. A task that
 *   fails for any reason (the wiper, its deadline, a BMC that never answers)
 *   or is cancelled records FailRelease (onFailed; the compensation of its
 *   first step on cancellation): the host is `release_failed`, its unfinished
 *   wipe ends, and a new release (another task) may take over. It is never
 *   provisioned nor returned to the pool from there. `beginHostRelease` also
 *   records it for a release task that ended without doing so (cancelled
 *   before its first step completed, or stopped before onFailed ran).
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

/** Whether `taskId`'s release of this host is unfinished (a releasing host, or an available one whose wipe it runs). */
function releaseUnfinished(host: HostState, taskId: string): boolean {
  return (host.state === "releasing" && host.releaseTaskId === taskId) || (host.state === "available" && wipeInProgress(host)?.taskId === taskId);
}

/** The task failed or was cancelled: the host is marked release_failed (then another release may take over). */
async function markReleaseFailed(task: ExistingTask, deps: MaskinSagaDeps, reason: string): Promise<void> {
  const { hostId } = hostInputOf(task);
  if (!releaseUnfinished(await loadHost(deps.store, hostId), task.taskId)) return;
  try {
    await hostCommand(deps, task, { type: "FailRelease", hostId, taskId: task.taskId, reason: reason.slice(0, 2000) || "release failed", at: at() });
  } catch (error) {
    if (!isDomainError(error)) throw error; // another release took over meanwhile: nothing to mark
  }
}

const powerOff = maskinWork("Power the host off", "power", () => ({ operation: "off" }));

export const hostReleaseSaga = defineSaga<MaskinSagaDeps>({
  kind: HOST_RELEASE_KIND,
  onFailed: (task, deps) => markReleaseFailed(task, deps, task.failure?.reason ?? "release failed"),
  steps: {
    // Every later step comes after this one: its compensation covers a cancellation at any later point.
    "power-off": { ...powerOff, compensate: (task, deps) => markReleaseFailed(task, deps, `task cancelled: ${task.cancellation?.reason ?? "cancelled"}`) },
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
 * when it is being provisioned or released by another task that still runs.
 * A release whose task has ended (failed or cancelled) without recording it
 * is marked release_failed first, so a host is never stuck `releasing`.
 */
export async function beginHostRelease(
  store: CommandStore,
  options: { readonly hostId: string; readonly taskId: string; readonly actor: Actor; readonly correlationId: string; readonly now: Date },
): Promise<TaskScope> {
  let before = await loadHost(store, options.hostId);
  const running = before.state === "releasing" ? before.releaseTaskId : null;
  if (running && running !== options.taskId) {
    const task = (await loadHeld(store, taskHandler, taskStreamId(running))).state;
    if (task.exists && isTerminal(task) && task.status !== "succeeded") {
      const reason = task.failure?.reason ?? (task.cancellation ? `task cancelled: ${task.cancellation.reason}` : `task ${task.status}`);
      try {
        await executeHostCommand(
          store,
          { type: "FailRelease", hostId: options.hostId, taskId: running, reason: reason.slice(0, 2000) || `task ${task.status}`, at: options.now.toISOString() },
          { actor: options.actor, correlationId: options.correlationId, scope: { tenantId: PLATFORM_TENANT } },
        );
      } catch (error) {
        if (!isDomainError(error)) throw error; // recorded meanwhile (its onFailed): StartRelease decides on what is there
      }
      before = await loadHost(store, options.hostId);
    }
  }
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
