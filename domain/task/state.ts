import type { BlockKind, TaskResource, TaskScope } from "./commands.ts";
import type { TaskEvent } from "./events.ts";

export type TaskStatus = "pending" | "running" | "blocked" | "succeeded" | "failed" | "cancelled";
export type StepStatus = "pending" | "running" | "completed" | "failed";

export const TERMINAL_STATUSES: ReadonlySet<TaskStatus> = new Set(["succeeded", "failed", "cancelled"]);

export interface WorkRequest {
  readonly requestId: string;
  readonly attempt: number;
  readonly service: string;
  readonly action: string;
  readonly datacenter: string;
  /** The one worker asked (a hypervisor host), null for any worker of the service in the datacenter. */
  readonly target: string | null;
  /** True until the worker answered (success or failure). */
  readonly outstanding: boolean;
}

export interface StepState {
  readonly name: string;
  readonly title: string;
  readonly status: StepStatus;
  /** Attempts requested so far (request ids keep counting across a retry of the task). */
  readonly attempts: number;
  /** Attempts that count against maxAttempts: those since the step (re)started. */
  readonly attemptsInBudget: number;
  readonly request: WorkRequest | null;
  readonly percent: number;
  readonly message: string;
  readonly lastError: { readonly code: string; readonly message: string } | null;
  readonly retryAt: string | null;
}

export interface Blocked {
  readonly step: string | null;
  readonly dependency: string;
  readonly kind: BlockKind;
  readonly reason: string;
  readonly since: string;
}

export interface ExistingTask {
  readonly exists: true;
  readonly taskId: string;
  readonly kind: string;
  readonly title: string;
  readonly resource: TaskResource;
  readonly scope: TaskScope;
  readonly deadline: string;
  readonly maxAttempts: number;
  readonly input: Readonly<Record<string, unknown>>;
  readonly status: TaskStatus;
  readonly steps: readonly StepState[];
  readonly blocked: Blocked | null;
  readonly cancellation: { readonly reason: string } | null;
  readonly failure: { readonly step: string | null; readonly code: string; readonly reason: string } | null;
}

export type TaskState = { readonly exists: false } | ExistingTask;

export const initialTaskState: TaskState = { exists: false };

export function isTerminal(task: ExistingTask): boolean {
  return TERMINAL_STATUSES.has(task.status);
}

/** The step being worked on: the running one, else none. */
export function currentStep(task: ExistingTask): StepState | undefined {
  return task.steps.find((step) => step.status === "running" || step.status === "failed");
}

function updateStep(task: ExistingTask, name: string, change: (step: StepState) => StepState): ExistingTask {
  return { ...task, steps: task.steps.map((step) => (step.name === name ? change(step) : step)) };
}

/** Pure application of one event; assumes decide() already checked the rules. */
export function evolveTask(state: TaskState, event: TaskEvent): TaskState {
  if (event.type === "TaskCreated") {
    const d = event.data;
    return {
      exists: true,
      taskId: d.taskId,
      kind: d.kind,
      title: d.title,
      resource: d.resource,
      scope: d.scope,
      deadline: d.deadline,
      maxAttempts: d.maxAttempts,
      input: d.input,
      status: "pending",
      steps: d.steps.map((plan) => ({
        name: plan.name,
        title: plan.title,
        status: "pending",
        attempts: 0,
        attemptsInBudget: 0,
        request: null,
        percent: 0,
        message: "",
        lastError: null,
        retryAt: null,
      })),
      blocked: null,
      cancellation: null,
      failure: null,
    };
  }
  if (!state.exists) return state;
  const task = state;
  switch (event.type) {
    case "TaskStarted":
      return { ...task, status: task.blocked ? "blocked" : "running" };
    case "TaskStepStarted":
      return updateStep(task, event.data.step, (step) => ({ ...step, status: "running", attemptsInBudget: 0, retryAt: null }));
    case "TaskWorkRequested": {
      const d = event.data;
      return updateStep(task, d.step, (step) => ({
        ...step,
        attempts: d.attempt,
        attemptsInBudget: step.attemptsInBudget + 1,
        retryAt: null,
        request: { requestId: d.requestId, attempt: d.attempt, service: d.service, action: d.action, datacenter: d.datacenter, target: d.target ?? null, outstanding: true },
      }));
    }
    case "TaskStepProgressed":
      return updateStep(task, event.data.step, (step) => ({ ...step, percent: event.data.percent, message: event.data.message }));
    case "TaskStepCompleted":
      return updateStep(task, event.data.step, (step) => ({
        ...step,
        status: "completed",
        percent: 100,
        retryAt: null,
        request: step.request ? { ...step.request, outstanding: false } : null,
      }));
    case "TaskStepAttemptFailed":
      return updateStep(task, event.data.step, (step) => ({
        ...step,
        lastError: { code: event.data.code, message: event.data.message },
        retryAt: event.data.retryAt,
        request: step.request ? { ...step.request, outstanding: false } : null,
      }));
    case "TaskBlocked": {
      const d = event.data;
      return { ...task, status: "blocked", blocked: { step: d.step, dependency: d.dependency, kind: d.kind, reason: d.reason, since: d.since } };
    }
    case "TaskUnblocked":
      return { ...task, status: task.steps.some((s) => s.status !== "pending") ? "running" : "pending", blocked: null };
    case "TaskCancellationRequested":
      return { ...task, cancellation: { reason: event.data.reason } };
    case "TaskCancelled":
      return { ...task, status: "cancelled", blocked: null, cancellation: task.cancellation ?? { reason: event.data.reason } };
    case "TaskSucceeded":
      return { ...task, status: "succeeded", blocked: null };
    case "TaskFailed": {
      const d = event.data;
      const failed = { ...task, status: "failed" as const, blocked: null, failure: { step: d.step, code: d.code, reason: d.reason } };
      return d.step ? updateStep(failed, d.step, (step) => ({ ...step, status: "failed" })) : failed;
    }
    case "TaskRetried":
      return updateStep({ ...task, status: "running", failure: null, deadline: event.data.deadline }, event.data.step, (step) => ({
        ...step,
        status: "running",
        attemptsInBudget: 0,
        retryAt: null,
        request: null,
      }));
    default:
      return unreachable(event);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled task event ${JSON.stringify(value)}`);
}
