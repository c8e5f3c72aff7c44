import { z } from "zod";

/**
 * Task commands. Time (`at`, ISO 8601) and every id come in with the command:
 * the decider has no clock. Retry timing (`retryAt`, with its jitter) is
 * chosen by the saga runtime, not here.
 */

export const TaskIdSchema = z.string().min(1).max(100).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, {
  message: "must be letters, digits, '.', '_' or '-'",
});
const At = z.iso.datetime({ offset: true });
const StepName = z.string().min(1).max(63).regex(/^[a-z0-9][a-z0-9-]*$/, { message: "must be lowercase a-z, 0-9 and '-'" });
/** A NATS subject token: services, actions and datacenters end up in `dv.<service>.cmd.<action>.<datacenter>`. */
const Token = z.string().min(1).max(63).regex(/^[a-z0-9][a-z0-9_-]*$/, { message: "must be lowercase a-z, 0-9, '_' or '-'" });
const Json = z.record(z.string(), z.unknown());
const ErrorText = z.string().min(1).max(4000);

export const TaskScopeSchema = z.strictObject({
  tenantId: z.string().min(1).max(100),
  projectId: z.string().min(1).max(100).nullable(),
  environmentId: z.string().min(1).max(100).nullable(),
});
export type TaskScope = z.infer<typeof TaskScopeSchema>;

export const TaskResourceSchema = z.strictObject({
  type: z.string().min(1).max(63),
  id: z.string().min(1).max(200),
});
export type TaskResource = z.infer<typeof TaskResourceSchema>;

export const StepPlanSchema = z.strictObject({ name: StepName, title: z.string().min(1).max(200) });
export type StepPlan = z.infer<typeof StepPlanSchema>;

export const BlockKindSchema = z.enum(["hard", "soft", "reconciliation"]);
export type BlockKind = z.infer<typeof BlockKindSchema>;

export const CreateTaskSchema = z.strictObject({
  type: z.literal("CreateTask"),
  taskId: TaskIdSchema,
  /** Which saga drives it, e.g. "sentral.project-bootstrap". */
  kind: z.string().min(1).max(100),
  title: z.string().min(1).max(200),
  resource: TaskResourceSchema,
  scope: TaskScopeSchema,
  steps: z.array(StepPlanSchema).min(1).max(50),
  deadline: At,
  /** Attempts per step before a transient failure becomes the task's failure. */
  maxAttempts: z.number().int().min(1).max(100).default(5),
  /** What the saga needs to do the work (never secrets: references to them). */
  input: Json.default({}),
  at: At,
});

export const StartStepSchema = z.strictObject({ type: z.literal("StartStep"), taskId: TaskIdSchema, step: StepName, at: At });

export const RequestWorkSchema = z.strictObject({
  type: z.literal("RequestWork"),
  taskId: TaskIdSchema,
  step: StepName,
  service: Token,
  action: Token,
  datacenter: Token,
  /** One worker within the datacenter (a hypervisor host): `dv.<service>.cmd.<action>.<datacenter>.<target>`; null: any worker of the service there. */
  target: Token.nullable().default(null),
  payload: Json.default({}),
  at: At,
});

export const ReportProgressSchema = z.strictObject({
  type: z.literal("ReportProgress"),
  taskId: TaskIdSchema,
  step: StepName,
  percent: z.number().int().min(0).max(100),
  message: z.string().max(500).default(""),
  at: At,
});

export const CompleteStepSchema = z.strictObject({
  type: z.literal("CompleteStep"),
  taskId: TaskIdSchema,
  step: StepName,
  /** When the step was a work request: which one answered (a stale answer changes nothing). */
  requestId: z.string().min(1).max(300).optional(),
  output: Json.default({}),
  at: At,
});

export const RecordAttemptFailureSchema = z.strictObject({
  type: z.literal("RecordAttemptFailure"),
  taskId: TaskIdSchema,
  step: StepName,
  requestId: z.string().min(1).max(300),
  code: z.string().min(1).max(100),
  message: ErrorText,
  /** False: retrying cannot help (bad input, auth failed, poison message): the task fails now. */
  transient: z.boolean(),
  retryAt: At,
  at: At,
});

export const BlockTaskSchema = z.strictObject({
  type: z.literal("BlockTask"),
  taskId: TaskIdSchema,
  dependency: z.string().min(1).max(200),
  kind: BlockKindSchema,
  reason: z.string().min(1).max(1000),
  at: At,
});

export const UnblockTaskSchema = z.strictObject({
  type: z.literal("UnblockTask"),
  taskId: TaskIdSchema,
  dependency: z.string().min(1).max(200),
  at: At,
});

export const SucceedTaskSchema = z.strictObject({ type: z.literal("SucceedTask"), taskId: TaskIdSchema, output: Json.default({}), at: At });

export const FailTaskSchema = z.strictObject({
  type: z.literal("FailTask"),
  taskId: TaskIdSchema,
  code: z.string().min(1).max(100),
  reason: ErrorText,
  at: At,
});

export const RequestCancellationSchema = z.strictObject({
  type: z.literal("RequestCancellation"),
  taskId: TaskIdSchema,
  reason: z.string().min(1).max(1000).default("cancelled by request"),
  at: At,
});

/** The saga has stopped the running step (and compensated what it declared): the task ends cancelled. */
export const ConfirmCancellationSchema = z.strictObject({ type: z.literal("ConfirmCancellation"), taskId: TaskIdSchema, at: At });

/** Runs a failed task again from its failed step, with a new deadline. */
export const RetryTaskSchema = z.strictObject({ type: z.literal("RetryTask"), taskId: TaskIdSchema, deadline: At, at: At });

export const ExpireDeadlineSchema = z.strictObject({ type: z.literal("ExpireDeadline"), taskId: TaskIdSchema, at: At });

export const TaskCommandSchema = z.discriminatedUnion("type", [
  CreateTaskSchema,
  StartStepSchema,
  RequestWorkSchema,
  ReportProgressSchema,
  CompleteStepSchema,
  RecordAttemptFailureSchema,
  BlockTaskSchema,
  UnblockTaskSchema,
  SucceedTaskSchema,
  FailTaskSchema,
  RequestCancellationSchema,
  ConfirmCancellationSchema,
  RetryTaskSchema,
  ExpireDeadlineSchema,
]);

export type TaskCommand = z.infer<typeof TaskCommandSchema>;
export type TaskCommandType = TaskCommand["type"];
export type TaskCommandOf<T extends TaskCommandType> = Extract<TaskCommand, { type: T }>;
/** What callers write: defaults may be left out. */
export type TaskCommandInput = z.input<typeof TaskCommandSchema>;
