import type { RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { ConcurrencyError } from "../../../adapters/eventstore/errors.ts";
import { comparePositions, formatPosition, parsePosition } from "../../../adapters/eventstore/position.ts";
import { CommandScopeError, CommandValidationError } from "../../../commands/errors.ts";
import { executeTaskCommand, taskEnvelopeScope } from "../../../commands/task/index.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import { TASK_STREAM_PREFIX, type TaskCommandInput, type TaskStatus } from "../../../domain/task/index.ts";
import { ProjectionWaitTimeoutError, tasksProjection } from "../../../projections/index.ts";
import type { TaskRow } from "../../../projections/sentral/tasks.ts";
import { canSee, canWrite, type ResourceScope } from "../../auth/policy.ts";
import { problemKind } from "../../problem.ts";
import { canSeeTask, taskScope, taskVisibility } from "../../read/tasks.ts";
import type { AcceptedView, MutationFailure } from "../commands.ts";
import { pageRequest, toConnection } from "../connections.ts";
import { actorOf, type GraphqlContext } from "../context.ts";
import { ClientError } from "../errors.ts";
import { taskGlobalId } from "../ids.ts";
import { filteredEvents, startPosition } from "../subscriptions.ts";
import type { ResolverMap, SubscriptionResolver } from "./types.ts";

/**
 * Tasks over GraphQL: the same read model, visibility and commands as REST
 * /v1/tasks (api/rest/tasks.ts). A task is visible to whoever can see its
 * scope; what the caller may not see reads as null / NotFound / NOT_FOUND,
 * exactly like what does not exist. cancelTask and retryTask need write
 * access to the task's scope.
 */

export interface TaskView {
  readonly __typename: "Task";
  readonly id: string;
  readonly taskId: string;
  readonly kind: string;
  readonly title: string;
  readonly resource: { readonly type: string; readonly id: string };
  readonly tenantId: string;
  readonly projectId: string | null;
  readonly environmentId: string | null;
  readonly status: string;
  readonly currentStep: string | null;
  readonly steps: ReadonlyArray<Record<string, unknown>>;
  readonly blocked: Record<string, unknown> | null;
  readonly failure: TaskRow["failure"];
  readonly cancellationRequested: boolean;
  readonly cancellationReason: string | null;
  readonly deadline: Date;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly version: number;
  readonly position: string;
}

export function taskView(row: TaskRow): TaskView {
  return {
    __typename: "Task",
    id: taskGlobalId(row.task_id),
    taskId: row.task_id,
    kind: row.kind,
    title: row.title,
    resource: { type: row.resource_type, id: row.resource_id },
    tenantId: row.tenant_id,
    projectId: row.project_id,
    environmentId: row.environment_id,
    status: row.status.toUpperCase(),
    currentStep: row.current_step,
    steps: row.steps.map((s) => ({
      name: s.name,
      title: s.title,
      status: s.status.toUpperCase(),
      attempts: s.attempts,
      percent: s.percent,
      message: s.message,
      lastError: s.lastError,
      retryAt: s.retryAt,
    })),
    blocked: row.blocked ? { ...row.blocked, kind: row.blocked.kind.toUpperCase() } : null,
    failure: row.failure,
    cancellationRequested: row.cancellation_reason !== null,
    cancellationReason: row.cancellation_reason,
    deadline: row.deadline,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    version: row.version,
    position: row.position,
  };
}

/** The task when the caller may see it, else null (like a missing one). */
export async function visibleTask(context: GraphqlContext, taskId: string): Promise<TaskRow | null> {
  const actor = actorOf(context);
  const row = await context.services.tasks.getTask(taskId);
  return row && canSeeTask(actor, row) ? row : null;
}

interface TaskFilterArgs {
  readonly status?: string | null;
  readonly tenantId?: string | null;
  readonly projectId?: string | null;
  readonly environmentId?: string | null;
  readonly resourceType?: string | null;
  readonly resourceId?: string | null;
}

const defined = <K extends string>(key: K, value: string | null | undefined) => (value === null || value === undefined ? {} : { [key]: value });

// ---- mutations -----------------------------------------------------------

type TaskPayloadView = { readonly __typename: "TaskPayload"; readonly task: TaskView; readonly position: string; readonly changed: boolean };

function taskNotFound(taskId: string): MutationFailure {
  return { __typename: "NotFound", code: "task_not_found", message: `task ${taskId} does not exist`, resource: "task", resourceId: taskId };
}

async function runTaskMutation(
  context: GraphqlContext,
  taskId: string,
  expectedVersion: number | null | undefined,
  command: (row: TaskRow, at: Date) => TaskCommandInput,
): Promise<TaskPayloadView | MutationFailure | AcceptedView> {
  const actor = actorOf(context);
  const row = await context.services.tasks.getTask(taskId);
  if (!row || !canSeeTask(actor, row)) return taskNotFound(taskId);
  if (!canWrite(actor, taskScope(row))) return { __typename: "Forbidden", code: "forbidden", message: "your roles do not allow you to change this task" };
  const pinned = expectedVersion !== null && expectedVersion !== undefined;
  const input = command(row, new Date());
  let result;
  try {
    result = await executeTaskCommand(context.services.store, input, {
      actor: { kind: actor.kind, id: actor.id },
      correlationId: context.correlationId,
      scope: taskEnvelopeScope({ tenantId: row.tenant_id, projectId: row.project_id, environmentId: row.environment_id }),
      ...(pinned ? { expectedVersion: expectedVersion! } : {}),
    });
  } catch (error) {
    const failure = failureOf(error, taskId, pinned);
    if (failure) {
      context.log.info({ command: input.type, code: failure.code }, "command refused");
      return failure;
    }
    throw error;
  }
  context.log.info({ command: input.type, stream: result.streamId, version: result.version, appended: result.events.length }, "command ran");
  const position = result.position ? formatPosition(result.position) : "0.0";
  const accepted: AcceptedView = {
    __typename: "Accepted",
    position,
    message: `written at ${position}; the read model did not show it within ${context.services.writeWaitMs} ms, read it again shortly`,
  };
  if (result.position) {
    try {
      await context.services.runner.waitForPosition(tasksProjection.name, result.position, context.services.writeWaitMs);
    } catch (error) {
      if (error instanceof ProjectionWaitTimeoutError) return accepted;
      throw error;
    }
  }
  const after = await context.services.tasks.getTask(taskId);
  return after ? { __typename: "TaskPayload", task: taskView(after), position, changed: result.events.length > 0 } : accepted;
}

function failureOf(error: unknown, taskId: string, pinned: boolean): MutationFailure | null {
  if (error instanceof CommandValidationError) {
    const fields = error.issues.map((issue) => ({ path: issue.path, message: issue.message, code: issue.code }));
    return {
      __typename: "ValidationFailed",
      code: "command_invalid",
      message: `the input is not valid: ${fields.map((f) => `${f.path || "(input)"}: ${f.message}`).join("; ")}`,
      fields,
    };
  }
  if (error instanceof DomainError) {
    if (error.code === "task_not_found") return taskNotFound(taskId);
    const kind = problemKind(error.code).status === 409 ? "Conflict" : "Rejected";
    return { __typename: kind, code: error.code, message: error.message, details: error.details };
  }
  if (error instanceof ConcurrencyError) {
    return {
      __typename: "Conflict",
      code: pinned ? "precondition_failed" : "concurrency_conflict",
      message: pinned
        ? `expectedVersion ${String(error.expected)} no longer holds, the task is at ${String(error.actual)}: read it again and decide anew`
        : "the task kept changing while this mutation was decided; retry",
      details: { expectedVersion: error.expected, currentVersion: error.actual },
    };
  }
  if (error instanceof CommandScopeError) return { __typename: "Forbidden", code: error.code, message: "your roles do not allow you to act outside your scope" };
  return null;
}

// ---- subscription --------------------------------------------------------

/** Errors the caller may see pass; anything else is logged and masked. */
async function guarded<T>(context: GraphqlContext, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ClientError) throw error;
    context.log.error({ err: error }, "subscription failed to start");
    throw new ClientError("INTERNAL_SERVER_ERROR", `internal error; quote correlation id ${context.correlationId}`);
  }
}

/** How long a task event may take to reach the read model before the subscription gives up (the client resumes). */
const READ_MODEL_WAIT_MS = 30_000;

const taskUpdated: SubscriptionResolver<
  { id?: string | null; tenantId?: string | null; projectId?: string | null; afterPosition?: string | null },
  TaskView
> = {
  subscribe: (_root, args, context) =>
    guarded(context, async () => {
      const actor = actorOf(context);
      const taskId = args.id ?? undefined;
      const tenantId = args.tenantId ?? undefined;
      const projectId = args.projectId ?? undefined;
      if (projectId !== undefined && tenantId === undefined) {
        throw new ClientError("BAD_USER_INPUT", "projectId needs tenantId", { argument: "projectId" });
      }
      if (taskId !== undefined && !(await visibleTask(context, taskId))) {
        throw new ClientError("NOT_FOUND", `task ${taskId} does not exist`);
      }
      if (tenantId !== undefined) {
        // Invisible answers exactly as missing: canSee depends on the caller's roles only.
        if (!canSee(actor, { tenantId })) throw new ClientError("NOT_FOUND", `tenant ${tenantId} does not exist`);
        if (projectId !== undefined && !canSee(actor, { tenantId, projectId })) throw new ClientError("NOT_FOUND", `project ${projectId} does not exist`);
      }
      const after = await startPosition(args.afterPosition, () => context.services.store.headPosition());
      const events = filteredEvents(
        context.services.store.subscribe({ after }),
        (event) => {
          if (!event.streamId.startsWith(TASK_STREAM_PREFIX) || !tasksProjection.eventTypes!.includes(event.type)) return undefined;
          const eventTaskId = (event.data as { taskId?: unknown }).taskId;
          if (typeof eventTaskId !== "string") return undefined;
          if (taskId !== undefined && eventTaskId !== taskId) return undefined;
          if (tenantId !== undefined && event.scope.tenantId !== tenantId) return undefined;
          if (projectId !== undefined && event.scope.projectId !== projectId) return undefined;
          const scope: ResourceScope = event.scope.projectId ? { tenantId: event.scope.tenantId, projectId: event.scope.projectId } : { tenantId: event.scope.tenantId };
          return canSee(actor, scope) ? event : undefined;
        },
        context.log,
        after,
      );
      return taskStates(context, events);
    }),
  resolve: (payload) => payload,
};

/**
 * Each task event as the task's row once the read model has applied it.
 * Several events of one append become one update when the row already
 * shows them all (a row at or before the last position sent is skipped), so
 * every Task delivered is newer than the one before, and its `position` is
 * exactly where to resume.
 */
function taskStates(context: GraphqlContext, events: AsyncIterableIterator<RecordedEvent>): AsyncIterableIterator<TaskView> {
  const actor = actorOf(context);
  const sent = new Map<string, string>();
  const iterator: AsyncIterableIterator<TaskView> = {
    async next(): Promise<IteratorResult<TaskView>> {
      for (;;) {
        const step = await events.next();
        if (step.done) return { value: undefined, done: true };
        const event = step.value;
        try {
          await context.services.runner.waitForPosition(tasksProjection.name, event, READ_MODEL_WAIT_MS);
        } catch (error) {
          await events.return?.();
          context.log.error({ err: error, position: formatPosition(event) }, "task subscription: read model behind");
          throw new ClientError("INTERNAL_SERVER_ERROR", `the tasks read model is behind; subscribe again with afterPosition "${previous(event)}"`);
        }
        const taskId = (event.data as { taskId: string }).taskId;
        const row = await context.services.tasks.getTask(taskId);
        if (!row || !canSeeTask(actor, row)) continue;
        const last = sent.get(taskId);
        if (last !== undefined && comparePositions(parsePosition(row.position), parsePosition(last)) <= 0) continue;
        sent.set(taskId, row.position);
        return { value: taskView(row), done: false };
      }
    },
    async return(): Promise<IteratorResult<TaskView>> {
      await events.return?.();
      return { value: undefined, done: true };
    },
    async throw(error?: unknown): Promise<IteratorResult<TaskView>> {
      await events.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

/** The position just before an event (where a resubscription must start to get it again). */
function previous(event: RecordedEvent): string {
  return formatPosition({ transactionId: event.transactionId, globalPosition: event.globalPosition - 1n });
}

// ---- resolvers -----------------------------------------------------------

export const taskResolvers: ResolverMap = {
  Query: {
    task: async (_root: unknown, args: { id: string }, context: GraphqlContext) => {
      const row = await visibleTask(context, args.id);
      return row ? taskView(row) : null;
    },
    tasks: async (_root: unknown, args: { filter?: TaskFilterArgs | null; first?: number | null; after?: string | null }, context: GraphqlContext) => {
      const list = "tasks";
      const page = pageRequest(list, args);
      const filter = args.filter ?? {};
      const rows = await context.services.tasks.listTasks(taskVisibility(actorOf(context)), {
        limit: page.first + 1,
        ...(page.after !== undefined ? { after: page.after } : {}),
        ...(filter.status ? { status: filter.status.toLowerCase() as TaskStatus } : {}),
        ...defined("tenantId", filter.tenantId),
        ...defined("projectId", filter.projectId),
        ...defined("environmentId", filter.environmentId),
        ...defined("resourceType", filter.resourceType),
        ...defined("resourceId", filter.resourceId),
      });
      return toConnection(list, rows, page.first, (row) => row.task_id, taskView);
    },
  },
  Mutation: {
    cancelTask: (_root: unknown, args: { input: { taskId: string; reason?: string | null; expectedVersion?: number | null } }, context: GraphqlContext) =>
      runTaskMutation(context, args.input.taskId, args.input.expectedVersion, (row, at) => ({
        type: "RequestCancellation",
        taskId: row.task_id,
        ...(args.input.reason !== null && args.input.reason !== undefined ? { reason: args.input.reason } : {}),
        at: at.toISOString(),
      })),
    retryTask: (_root: unknown, args: { input: { taskId: string; deadline?: Date | null; expectedVersion?: number | null } }, context: GraphqlContext) =>
      runTaskMutation(context, args.input.taskId, args.input.expectedVersion, (row, at) => ({
        type: "RetryTask",
        taskId: row.task_id,
        deadline: (args.input.deadline ?? new Date(at.getTime() + Math.max(Number(row.duration_ms), 60_000))).toISOString(),
        at: at.toISOString(),
      })),
  },
  Subscription: { taskUpdated },
};
