import type { CommandStore } from "../../commands/pipeline.ts";
import { executeHostCommand } from "../../commands/maskin/index.ts";
import { PLATFORM_TENANT, type Actor } from "../../domain/shared/envelope.ts";
import type { TaskCommandInput, TaskScope } from "../../domain/task/commands.ts";
import { defineSaga, sagaPlan, type InlineStep } from "../runtime/types.ts";
import { hostCommand, hostInputOf, loadHost, maskinWork, poolCommand, type MaskinSagaDeps } from "./common.ts";

/**
 * Releasing a host: power it off, wipe its disks, and give it back to the
 * pool (CompleteRelease + ReturnHostToPool). The host is put into
 * `releasing` by whoever creates the task (`beginHostRelease`, before
 * CreateTask), so that a release the host refuses (being provisioned by a
 * running task) never starts a task that would power it off. The `return`
 * step asks again (idempotent) so an interrupted creation still converges.
 * Default deadline 10 min. An unreachable BMC blocks the task like provisioning.
 */

export const HOST_RELEASE_KIND = "maskin.host-release";
export const HOST_RELEASE_DEADLINE_MS = 10 * 60_000;

const at = () => new Date().toISOString();

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
    wipe: maskinWork("Wipe the host's disks", "wipe", () => ({})),
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
