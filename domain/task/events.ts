import { z } from "zod";
import { BlockKindSchema, StepPlanSchema, TaskResourceSchema, TaskScopeSchema } from "./commands.ts";

/**
 * Task events: a published contract (the relay sends them on
 * `dv.task.evt.<verb>`, the task read model and `--wait` follow them). Never
 * change a shape in place: add a schemaVersion and an upcaster.
 * Every event carries the taskId; times that matter to readers (`since`,
 * `retryAt`) are in the data, the envelope's occurredAt says when it was recorded.
 */

const TaskId = z.string().min(1).max(100);
const Step = z.string().min(1).max(63);
const At = z.string().min(1);
const Json = z.record(z.string(), z.unknown());

export const TaskCreatedSchema = z.object({
  taskId: TaskId,
  kind: z.string(),
  title: z.string(),
  resource: TaskResourceSchema,
  scope: TaskScopeSchema,
  steps: z.array(StepPlanSchema),
  deadline: At,
  maxAttempts: z.number().int(),
  input: Json,
});
export const TaskStartedSchema = z.object({ taskId: TaskId });
export const TaskStepStartedSchema = z.object({ taskId: TaskId, step: Step });
export const TaskWorkRequestedSchema = z.object({
  taskId: TaskId,
  step: Step,
  attempt: z.number().int().min(1),
  requestId: z.string(),
  service: z.string(),
  action: z.string(),
  datacenter: z.string(),
  /** Absent in events from before targets existed: read as null. */
  target: z.string().nullable().optional(),
  payload: Json,
});
export const TaskStepProgressedSchema = z.object({ taskId: TaskId, step: Step, percent: z.number().int(), message: z.string() });
export const TaskStepCompletedSchema = z.object({ taskId: TaskId, step: Step, output: Json });
export const TaskStepAttemptFailedSchema = z.object({
  taskId: TaskId,
  step: Step,
  attempt: z.number().int(),
  requestId: z.string(),
  code: z.string(),
  message: z.string(),
  retryAt: At,
});
export const TaskBlockedSchema = z.object({
  taskId: TaskId,
  step: Step.nullable(),
  dependency: z.string(),
  kind: BlockKindSchema,
  reason: z.string(),
  since: At,
});
export const TaskUnblockedSchema = z.object({ taskId: TaskId, dependency: z.string(), blockedSince: At });
export const TaskCancellationRequestedSchema = z.object({ taskId: TaskId, reason: z.string() });
export const TaskCancelledSchema = z.object({ taskId: TaskId, reason: z.string() });
export const TaskSucceededSchema = z.object({ taskId: TaskId, output: Json });
export const TaskFailedSchema = z.object({ taskId: TaskId, step: Step.nullable(), code: z.string(), reason: z.string() });
export const TaskRetriedSchema = z.object({ taskId: TaskId, step: Step, deadline: At });

export const taskEventSchemas = {
  TaskCreated: { schemaVersion: 1, schema: TaskCreatedSchema },
  TaskStarted: { schemaVersion: 1, schema: TaskStartedSchema },
  TaskStepStarted: { schemaVersion: 1, schema: TaskStepStartedSchema },
  TaskWorkRequested: { schemaVersion: 1, schema: TaskWorkRequestedSchema },
  TaskStepProgressed: { schemaVersion: 1, schema: TaskStepProgressedSchema },
  TaskStepCompleted: { schemaVersion: 1, schema: TaskStepCompletedSchema },
  TaskStepAttemptFailed: { schemaVersion: 1, schema: TaskStepAttemptFailedSchema },
  TaskBlocked: { schemaVersion: 1, schema: TaskBlockedSchema },
  TaskUnblocked: { schemaVersion: 1, schema: TaskUnblockedSchema },
  TaskCancellationRequested: { schemaVersion: 1, schema: TaskCancellationRequestedSchema },
  TaskCancelled: { schemaVersion: 1, schema: TaskCancelledSchema },
  TaskSucceeded: { schemaVersion: 1, schema: TaskSucceededSchema },
  TaskFailed: { schemaVersion: 1, schema: TaskFailedSchema },
  TaskRetried: { schemaVersion: 1, schema: TaskRetriedSchema },
} as const;

type Schemas = typeof taskEventSchemas;
export type TaskEventType = keyof Schemas;
export type TaskEvent = { [T in TaskEventType]: { type: T; data: z.infer<Schemas[T]["schema"]> } }[TaskEventType];
export type TaskEventOf<T extends TaskEventType> = Extract<TaskEvent, { type: T }>;
export const TASK_EVENT_TYPES = Object.keys(taskEventSchemas) as TaskEventType[];

export function taskEvent<T extends TaskEventType>(type: T, data: TaskEventOf<T>["data"]): TaskEventOf<T> {
  return { type, data } as TaskEventOf<T>;
}
