import { executeHostCommand, executePoolCommand, hostHandler, poolHandler } from "../../commands/maskin/index.ts";
import { loadStream, type CommandStore } from "../../commands/pipeline.ts";
import {
  hostStreamId,
  MASKIN_HOST_STREAM_PREFIX,
  poolStreamId,
  type HostCommandInput,
  type HostEvent,
  type HostState,
  type PoolCommandInput,
  type PoolEvent,
  type PoolState,
} from "../../domain/maskin/index.ts";
import { fold } from "../../domain/shared/decider.ts";
import { DomainError } from "../../domain/shared/errors.ts";
import { PLATFORM_TENANT, type Actor } from "../../domain/shared/envelope.ts";
import type { ExistingTask } from "../../domain/task/state.ts";
import type { WaitCompletion, WorkFailure, WorkSpec, WorkStep } from "../runtime/types.ts";

/** What the maskin sagas need: the event store for pool and host commands. */
export interface MaskinSagaDeps {
  readonly store: CommandStore;
}

export const MASKIN_SAGA_ACTOR: Actor = { kind: "service", id: "saga/maskin" };

/** Every maskin task's input names the host and its datacenter (where its worker runs). */
export interface HostTaskInput {
  readonly hostId: string;
  readonly datacenter: string;
}

export function hostInputOf(task: ExistingTask): HostTaskInput {
  const input = task.input as Partial<HostTaskInput>;
  if (typeof input.hostId !== "string" || typeof input.datacenter !== "string") {
    throw new DomainError("invalid_task_input", `task ${task.taskId} lacks hostId/datacenter in its input`, { taskId: task.taskId });
  }
  return { hostId: input.hostId, datacenter: input.datacenter };
}

/** The dependency an unreachable BMC blocks a task on. */
export function bmcDependency(hostId: string): string {
  return `bmc ${hostId}`;
}

/** The maskin worker answers `bmc_unreachable` when the BMC does not answer: the task is blocked on it while it retries. */
export function bmcDependencyOf(failure: WorkFailure, task: ExistingTask): string | null {
  return failure.code === "bmc_unreachable" ? bmcDependency(hostInputOf(task).hostId) : null;
}

/** A work step for the `maskin` worker service in the host's datacenter. */
export function maskinWork(title: string, action: "power" | "bootdev", payload: (task: ExistingTask) => Record<string, unknown>): WorkStep<MaskinSagaDeps> {
  return {
    title,
    work: (task): WorkSpec => {
      const { hostId, datacenter } = hostInputOf(task);
      return { service: "maskin", action, datacenter, payload: { hostId, ...payload(task) } };
    },
    dependencyOf: bmcDependencyOf,
  };
}

export async function loadHostWithEvents(store: CommandStore, hostId: string): Promise<{ state: HostState; events: HostEvent[] }> {
  const loaded = await loadStream<HostEvent>(store, hostStreamId(hostId), hostHandler.eventSchemas);
  return { state: fold(hostHandler.decider, loaded.events), events: loaded.events };
}

export async function loadHost(store: CommandStore, hostId: string): Promise<HostState> {
  return (await loadHostWithEvents(store, hostId)).state;
}

export async function loadPool(store: CommandStore, datacenter: string): Promise<PoolState> {
  const loaded = await loadStream<PoolEvent>(store, poolStreamId(datacenter), poolHandler.eventSchemas);
  return fold(poolHandler.decider, loaded.events);
}

function context(task: ExistingTask) {
  const correlationId = typeof task.input.correlationId === "string" ? task.input.correlationId : task.taskId;
  return { actor: MASKIN_SAGA_ACTOR, correlationId, causationId: task.taskId, scope: { tenantId: PLATFORM_TENANT } };
}

export function hostCommand(deps: MaskinSagaDeps, task: ExistingTask, command: HostCommandInput) {
  return executeHostCommand(deps.store, command, context(task));
}

export function poolCommand(deps: MaskinSagaDeps, task: ExistingTask, command: PoolCommandInput) {
  return executePoolCommand(deps.store, command, context(task));
}

/** A host fact names the task that provisions the host, or the release task of a wipe (its events carry `taskId`). */
export function hostFact(eventType: "HostNetbootFetched" | "HostInstallReported" | "HostWipeReported"): WaitCompletion<MaskinSagaDeps> {
  return {
    eventType,
    streamPrefix: MASKIN_HOST_STREAM_PREFIX,
    taskIdOf: (event) => {
      const taskId = (event.data as { taskId?: unknown } | null)?.taskId;
      return typeof taskId === "string" && taskId ? taskId : null;
    },
  };
}
