import type { FastifyReply, FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import { executeTaskCommand, taskEnvelopeScope } from "../../commands/task/index.ts";
import type { TaskCommandInput } from "../../domain/task/index.ts";
import type { TaskRow } from "../../projections/sentral/tasks.ts";
import { canWrite } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { actorOf } from "../http/access.ts";
import { etagFor, expectedVersionFrom, sendIfNotModified } from "../http/etag.ts";
import { decodeCursor, PageQuerySchema, pageSchema, toPage } from "../http/pagination.ts";
import { MinPositionQuerySchema, type ReadYourWrites } from "../http/read-your-writes.ts";
import type { ApiMetrics } from "../observability/metrics.ts";
import { ApiProblem } from "../problem.ts";
import { canSeeTask, taskScope, taskVisibility, type TaskReadModel } from "../read/tasks.ts";
import { ifMatchHeader, idempotencyHeader } from "./headers.ts";
import { AcceptedSchema, apiSchemas } from "./schemas.ts";

/**
 * Tasks: every long operation, its steps, and how it ended. Read-only except
 * for the two things a user may ask of a task: cancel it, and retry it after
 * it failed. A task is visible to whoever can see its scope (tenant, and
 * project when it has one); cancel and retry need write access to that scope
 * (tenant-admin of its tenant, project-member of its project, platform-admin).
 * A task the caller cannot see answers exactly like one that does not exist
 * (404 task_not_found), decided before the body is validated.
 *
 * ETag: `W/"<version>"`, the task stream's version; If-Match on cancel/retry
 * pins it. Writes wait for the tasks read model (X-Dv-Position) and answer the
 * task as it shows it afterwards.
 */
export interface TaskRouteDeps {
  readonly store: Parameters<typeof executeTaskCommand>[0];
  readonly read: TaskReadModel;
  /** Read-your-writes on the tasks projection. */
  readonly ryw: ReadYourWrites;
  readonly metrics: ApiMetrics;
  /** The clock of commands (`at`, default deadlines); tests may pin it. */
  readonly now?: () => Date;
}

const TAGS = ["tasks"];
const Timestamp = z.string().meta({ format: "date-time", description: "RFC 3339 timestamp (UTC)" });
const TASK_STATUSES = ["pending", "running", "blocked", "succeeded", "failed", "cancelled"] as const;

const TaskStepSchema = z.object({
  name: z.string(),
  title: z.string(),
  status: z.enum(["pending", "running", "completed", "failed"]),
  attempts: z.number().int().describe("Work requests sent for this step so far"),
  percent: z.number().int(),
  message: z.string().describe("The last progress message"),
  lastError: z.object({ code: z.string(), message: z.string() }).nullable(),
  retryAt: Timestamp.nullable().describe("When the next attempt is due, after a transient failure"),
});

export const TaskSchema = z.object({
  id: z.string(),
  kind: z.string().describe("Which process drives it, e.g. sentral.project-bootstrap"),
  title: z.string(),
  resource: z.object({ type: z.string(), id: z.string() }),
  tenantId: z.string(),
  projectId: z.string().nullable(),
  environmentId: z.string().nullable(),
  status: z.enum(TASK_STATUSES),
  currentStep: z.string().nullable().describe("The step being worked on (or the one that failed)"),
  steps: z.array(TaskStepSchema),
  blocked: z
    .object({
      step: z.string().nullable(),
      dependency: z.string(),
      kind: z.enum(["hard", "soft", "reconciliation"]),
      reason: z.string(),
      since: Timestamp,
    })
    .nullable(),
  failure: z.object({ step: z.string().nullable(), code: z.string(), reason: z.string() }).nullable(),
  cancellationRequested: z.boolean(),
  cancellationReason: z.string().nullable(),
  deadline: Timestamp,
  createdAt: Timestamp,
  updatedAt: Timestamp,
  version: z.number().int().describe("The task stream's version (the ETag)"),
  position: z.string().describe("Log position of the task's last event: follow it from here"),
});
apiSchemas.add(TaskSchema, { id: "Task" });
export type TaskView = z.infer<typeof TaskSchema>;

const TaskPage = pageSchema(TaskSchema);

const iso = (value: string | Date) => (value instanceof Date ? value : new Date(value)).toISOString();

export function renderTask(row: TaskRow): TaskView {
  return {
    id: row.task_id,
    kind: row.kind,
    title: row.title,
    resource: { type: row.resource_type, id: row.resource_id },
    tenantId: row.tenant_id,
    projectId: row.project_id,
    environmentId: row.environment_id,
    status: row.status,
    currentStep: row.current_step,
    steps: row.steps.map((s) => ({
      name: s.name,
      title: s.title,
      status: s.status,
      attempts: s.attempts,
      percent: s.percent,
      message: s.message,
      lastError: s.lastError ? { code: s.lastError.code, message: s.lastError.message } : null,
      retryAt: s.retryAt === null ? null : iso(s.retryAt),
    })),
    blocked: row.blocked ? { ...row.blocked, since: iso(row.blocked.since) } : null,
    failure: row.failure,
    cancellationRequested: row.cancellation_reason !== null,
    cancellationReason: row.cancellation_reason,
    deadline: iso(row.deadline),
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
    version: row.version,
    position: row.position,
  };
}

const TaskParams = z.object({ taskId: z.string().min(1).max(100) });

const TaskListQuery = PageQuerySchema.extend({
  status: z.enum(TASK_STATUSES).optional(),
  tenantId: z.string().min(1).max(100).optional(),
  projectId: z.string().min(1).max(100).optional(),
  environmentId: z.string().min(1).max(100).optional(),
  resource: z
    .string()
    .regex(/^[^:]+(:.+)?$/)
    .optional()
    .describe("`<type>` or `<type>:<id>`: only tasks about that resource (type), e.g. project:0193..."),
}).extend(MinPositionQuerySchema.shape);

const CancelBody = z.strictObject({ reason: z.string().trim().min(1).max(1000).optional() }).nullish();
const RetryBody = z
  .strictObject({
    deadline: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("When the retried task must be done; default: now + the task's original duration"),
  })
  .nullish();

export function taskNotFound(taskId: string): ApiProblem {
  return new ApiProblem("task_not_found", `task ${taskId} does not exist`, { details: { taskId } });
}

declare module "fastify" {
  interface FastifyRequest {
    /** The task of a /v1/tasks/{taskId} route, loaded and access-checked before validation. */
    task?: TaskRow;
  }
}

export const taskRoutes: FastifyPluginAsyncZod<TaskRouteDeps> = async (app, deps) => {
  const now = deps.now ?? (() => new Date());

  /**
   * Access of a single-task route (before body validation, after authentication):
   * an invisible task is the missing task's 404; writes need canWrite of its scope.
   */
  const loadVisible = (mode: "read" | "write") => async (request: FastifyRequest) => {
    const actor = actorOf(request);
    const { taskId } = request.params as { taskId: string };
    // ?minPosition first, so a task created at that position is found.
    const minPosition = (request.query as { minPosition?: unknown }).minPosition;
    if (mode === "read" && typeof minPosition === "string") await deps.ryw.beforeRead(minPosition);
    const row = await deps.read.getTask(taskId);
    if (!row || !canSeeTask(actor, row)) throw taskNotFound(taskId);
    if (mode === "write" && !canWrite(actor, taskScope(row))) throw new ApiProblem("forbidden", "your roles do not allow you to change this task");
    request.task = row;
  };

  app.get(
    "/v1/tasks",
    {
      schema: {
        operationId: "listTasks",
        summary: "List the tasks the caller can see",
        description: "Ordered by id; filters combine. A task is visible to whoever can see its tenant (and project).",
        tags: TAGS,
        querystring: TaskListQuery,
        response: { 200: TaskPage },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const { limit, cursor, status, tenantId, projectId, environmentId, resource, minPosition } = request.query;
      await deps.ryw.beforeRead(minPosition);
      const list = "tasks";
      const after = decodeCursor(list, cursor);
      const [resourceType, ...rest] = resource?.split(":") ?? [];
      const resourceId = rest.length > 0 ? rest.join(":") : undefined;
      const rows = await deps.read.listTasks(taskVisibility(actorOf(request)), {
        limit: limit + 1,
        ...(after !== undefined ? { after } : {}),
        ...(status !== undefined ? { status } : {}),
        ...(tenantId !== undefined ? { tenantId } : {}),
        ...(projectId !== undefined ? { projectId } : {}),
        ...(environmentId !== undefined ? { environmentId } : {}),
        ...(resourceType !== undefined ? { resourceType } : {}),
        ...(resourceId !== undefined ? { resourceId } : {}),
      });
      return toPage(list, rows, limit, (row) => row.task_id, renderTask);
    },
  );

  app.get(
    "/v1/tasks/:taskId",
    {
      schema: {
        operationId: "getTask",
        summary: "Get a task: its status, steps, block and outcome",
        tags: TAGS,
        params: TaskParams,
        querystring: MinPositionQuerySchema,
        response: { 200: TaskSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: loadVisible("read"),
    },
    async (request, reply) => {
      const row = request.task!;
      if (sendIfNotModified(request, reply, row.version)) return reply;
      return renderTask(row);
    },
  );

  const write = async (
    request: FastifyRequest,
    reply: FastifyReply,
    command: (row: TaskRow, at: Date) => TaskCommandInput,
  ) => {
    const actor: AuthenticatedActor = actorOf(request);
    const row = request.task!;
    const at = now();
    const expectedVersion = expectedVersionFrom(request);
    const input = command(row, at);
    const result = await executeTaskCommand(deps.store, input, {
      actor: { kind: actor.kind, id: actor.id },
      correlationId: request.id,
      scope: taskEnvelopeScope({ tenantId: row.tenant_id, projectId: row.project_id, environmentId: row.environment_id }),
      ...(expectedVersion !== undefined ? { expectedVersion } : {}),
    });
    for (const event of result.events) deps.metrics.eventsAppended.inc({ type: event.type });
    request.log.info({ command: input.type, stream: result.streamId, version: result.version, appended: result.events.length }, "command ran");
    const location = `/v1/tasks/${encodeURIComponent(row.task_id)}`;
    const visible = await deps.ryw.afterWrite(reply, result.position);
    const after = visible ? await deps.read.getTask(row.task_id) : undefined;
    if (!after) {
      reply.header("location", location);
      reply.code(202);
      return { status: "accepted" as const, position: result.position ? formatPosition(result.position) : "0.0", location };
    }
    reply.header("etag", etagFor(after.version));
    reply.code(200);
    return renderTask(after);
  };

  app.post(
    "/v1/tasks/:taskId/cancel",
    {
      schema: {
        operationId: "cancelTask",
        summary: "Ask a task to stop (write access to its scope)",
        description:
          "A task that has not started a step is cancelled at once; a running one is asked to stop and ends `cancelled` " +
          "when its process has stopped the running step. Asking again changes nothing. A finished task answers 409 task_finished.",
        tags: TAGS,
        params: TaskParams,
        headers: ifMatchHeader.extend(idempotencyHeader.shape),
        body: CancelBody,
        response: { 200: TaskSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: loadVisible("write"),
    },
    (request, reply) =>
      write(request, reply, (row, at) => ({
        type: "RequestCancellation",
        taskId: row.task_id,
        ...(request.body?.reason ? { reason: request.body.reason } : {}),
        at: at.toISOString(),
      })),
  );

  app.post(
    "/v1/tasks/:taskId/retry",
    {
      schema: {
        operationId: "retryTask",
        summary: "Run a failed task again from its failed step (write access to its scope)",
        description:
          "Only a failed task can be retried (409 task_not_failed while it runs, task_finished once it succeeded or was cancelled). " +
          "The new deadline is the body's, else now + the task's original duration.",
        tags: TAGS,
        params: TaskParams,
        headers: ifMatchHeader.extend(idempotencyHeader.shape),
        body: RetryBody,
        response: { 200: TaskSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: loadVisible("write"),
    },
    (request, reply) =>
      write(request, reply, (row, at) => ({
        type: "RetryTask",
        taskId: row.task_id,
        deadline: request.body?.deadline ?? new Date(at.getTime() + Math.max(Number(row.duration_ms), 60_000)).toISOString(),
        at: at.toISOString(),
      })),
  );
};
