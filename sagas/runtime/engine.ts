import type { WorkResultMessage } from "../../adapters/workers/port.ts";
import type { TaskCommandInput } from "../../domain/task/commands.ts";
import type { TaskEvent } from "../../domain/task/events.ts";
import { isTerminal, type ExistingTask } from "../../domain/task/state.ts";
import { isWaitStep, isWorkStep, type TaskSaga, type WorkSpec } from "./types.ts";

/**
 * The generic step engine, pure: given a task event and the task's state
 * *now* (folded from its stream, which may be ahead of the event), what to
 * do. Deciding from the current state rather than the event makes a
 * redelivered or late event harmless: the Task decider turns every command
 * whose effect already holds into a no-op, and effects are keyed (work by
 * request id, timers by (task, kind, key)).
 */
export type SagaAction =
  | { readonly type: "command"; readonly command: TaskCommandInput }
  /** Publish the work request the task recorded (TaskWorkRequested), and remember it is outstanding. */
  | {
      readonly type: "publish-work";
      readonly requestId: string;
      readonly step: string;
      readonly attempt: number;
      readonly service: string;
      readonly action: string;
      readonly datacenter: string;
      readonly target: string | null;
      readonly payload: Record<string, unknown>;
    }
  | { readonly type: "run-step"; readonly step: string }
  /** Ask the step's `resolveWork` (it reads state through deps) what to request, then RequestWork. */
  | { readonly type: "resolve-work"; readonly step: string }
  /** Run a wait step's check: output completes it, null reports its `waitingFor` as progress. */
  | { readonly type: "check-wait"; readonly step: string }
  | { readonly type: "schedule"; readonly timer: TimerSpec }
  /** Forget the task's timers and outstanding work (it has ended). */
  | { readonly type: "forget-task" }
  | { readonly type: "forget-work"; readonly requestId: string }
  | { readonly type: "cancel-work"; readonly service: string; readonly requestId: string; readonly reason: string }
  /** Run the saga's onFailed hook (the task failed). */
  | { readonly type: "on-failed" }
  /** Run the steps' compensations, in this order. */
  | { readonly type: "compensate"; readonly steps: readonly string[] };

export type TimerKind = "deadline" | "retry";

export interface TimerSpec {
  readonly kind: TimerKind;
  readonly key: string;
  readonly dueAt: string;
  readonly payload: Record<string, unknown>;
}

/** What to do about an event of a task this saga drives. */
export function reactToTaskEvent(saga: TaskSaga<any>, event: TaskEvent, task: ExistingTask, now: Date): SagaAction[] {
  switch (event.type) {
    case "TaskCreated":
      return [deadlineTimer(task), ...advance(saga, task, now)];
    case "TaskRetried":
      return [deadlineTimer(task), ...advance(saga, task, now)];
    case "TaskStepStarted":
    case "TaskStepCompleted":
    case "TaskUnblocked":
      return advance(saga, task, now);
    case "TaskStepAttemptFailed":
      return [{ type: "forget-work", requestId: event.data.requestId }, ...advance(saga, task, now)];
    case "TaskWorkRequested": {
      if (isTerminal(task) || task.cancellation) return [];
      const step = task.steps.find((s) => s.name === event.data.step);
      const request = step?.request;
      if (!request || request.requestId !== event.data.requestId || !request.outstanding || step.status !== "running") return [];
      const d = event.data;
      return [
        {
          type: "publish-work",
          requestId: d.requestId,
          step: d.step,
          attempt: d.attempt,
          service: d.service,
          action: d.action,
          datacenter: d.datacenter,
          target: d.target ?? null,
          payload: d.payload,
        },
      ];
    }
    case "TaskCancellationRequested":
      return cancel(saga, task, now);
    case "TaskFailed":
      if (saga.onFailed && task.status === "failed") return [...stopRunningWork(task, `task ${task.status}`), { type: "on-failed" }, { type: "forget-task" }];
      return [...stopRunningWork(task, `task ${task.status}`), { type: "forget-task" }];
    case "TaskSucceeded":
    case "TaskCancelled":
      return [...stopRunningWork(task, `task ${task.status}`), { type: "forget-task" }];
    case "TaskStarted":
    case "TaskStepProgressed":
    case "TaskBlocked":
      return [];
    default:
      return unreachable(event);
  }
}

/** Moves the task on from where it stands: start the next step, ask for work, run inline, schedule a retry, or succeed. */
export function advance(saga: TaskSaga<any>, task: ExistingTask, now: Date): SagaAction[] {
  if (isTerminal(task) || task.cancellation) return [];
  const at = now.toISOString();
  const step = task.steps.find((s) => s.status !== "completed");
  if (!step) return [{ type: "command", command: { type: "SucceedTask", taskId: task.taskId, output: {}, at } }];
  if (step.status === "failed") return [];
  if (step.status === "pending") return [{ type: "command", command: { type: "StartStep", taskId: task.taskId, step: step.name, at } }];
  const definition = saga.steps[step.name];
  if (!definition) throw new Error(`saga ${saga.kind} has no step ${step.name} (task ${task.taskId} plans it)`);
  if (isWaitStep(definition)) return [{ type: "check-wait", step: step.name }];
  if (!isWorkStep(definition)) return [{ type: "run-step", step: step.name }];
  if (step.request?.outstanding) return []; // the worker will answer it
  if (step.request && step.retryAt && Date.parse(step.retryAt) > now.getTime()) {
    return [{ type: "schedule", timer: { kind: "retry", key: step.name, dueAt: step.retryAt, payload: { step: step.name } } }];
  }
  return [requestWork(saga, task, step.name, at)];
}

/** The RequestWork command for a step, from the saga's declaration (`resolve-work` when it must read state first). */
export function requestWork(saga: TaskSaga<any>, task: ExistingTask, stepName: string, at: string): SagaAction {
  const definition = saga.steps[stepName];
  if (!definition || !isWorkStep(definition)) throw new Error(`saga ${saga.kind}: step ${stepName} is not a work step`);
  if (!definition.work) return { type: "resolve-work", step: stepName };
  return { type: "command", command: requestWorkCommand(task, stepName, definition.work(task), at) };
}

export function requestWorkCommand(task: ExistingTask, stepName: string, spec: WorkSpec, at: string): TaskCommandInput {
  return {
    type: "RequestWork",
    taskId: task.taskId,
    step: stepName,
    service: spec.service,
    action: spec.action,
    datacenter: spec.datacenter,
    ...(spec.target ? { target: spec.target } : {}),
    payload: spec.payload ?? {},
    at,
  };
}

/** A retry timer fired: ask again if the step still waits for a retry; otherwise nothing. */
export function reactToRetryTimer(saga: TaskSaga<any>, task: ExistingTask, stepName: string, now: Date): SagaAction[] {
  if (isTerminal(task) || task.cancellation) return [];
  const step = task.steps.find((s) => s.name === stepName);
  if (!step || step.status !== "running" || step.request?.outstanding) return [];
  return [requestWork(saga, task, stepName, now.toISOString())];
}

/**
 * A fact a wait step completes on names this task: check again if the task is
 * in that step right now. Otherwise nothing: a fact that came before the step
 * started is found by the check the step's start runs.
 */
export function reactToWaitEvent(saga: TaskSaga<any>, task: ExistingTask, stepName: string): SagaAction[] {
  if (isTerminal(task) || task.cancellation) return [];
  const step = task.steps.find((s) => s.status !== "completed");
  if (!step || step.name !== stepName || step.status !== "running") return [];
  const definition = saga.steps[stepName];
  if (!definition || !isWaitStep(definition)) return [];
  return [{ type: "check-wait", step: stepName }];
}

/**
 * What a worker's result means for the task: progress, completion, or an
 * attempt failure (retried at `retryAt` while the budget lasts). A failure
 * that names a dependency (the result's own `dependency`, else the step's
 * `dependencyOf`) also blocks the task on it (hard, reason = the error);
 * the next answer to the step that names none unblocks it. A stale answer
 * (not the step's current request) decides nothing beyond what the Task
 * decider already ignores.
 */
export function decideResult(
  saga: TaskSaga<any>,
  task: ExistingTask,
  result: WorkResultMessage,
  times: { readonly at: string; readonly retryAt: string },
): TaskCommandInput[] {
  const { at } = times;
  const taskId = task.taskId;
  if (result.kind === "progress") {
    return [{ type: "ReportProgress", taskId, step: result.step, percent: result.percent, message: result.message.slice(0, 500), at }];
  }
  const step = task.steps.find((s) => s.name === result.step);
  const current = !isTerminal(task) && step?.status === "running" && step.request?.outstanding === true && step.request.requestId === result.requestId;
  const blockedHere = current && task.blocked !== null && task.blocked.step === result.step;
  const unblock: TaskCommandInput[] = blockedHere ? [{ type: "UnblockTask", taskId, dependency: task.blocked!.dependency, at }] : [];
  if (result.kind === "succeeded") {
    return [...unblock, { type: "CompleteStep", taskId, step: result.step, requestId: result.requestId, output: result.output, at }];
  }
  const failure: TaskCommandInput = {
    type: "RecordAttemptFailure",
    taskId,
    step: result.step,
    requestId: result.requestId,
    code: result.code.slice(0, 100),
    message: result.message.slice(0, 4000),
    transient: result.transient,
    retryAt: times.retryAt,
    at,
  };
  if (!current) return [failure];
  const definition = saga.steps[result.step];
  const dependency =
    result.dependency ?? (definition && isWorkStep(definition) ? (definition.dependencyOf?.({ code: result.code, message: result.message }, task) ?? null) : null);
  if (!dependency || !result.transient) return [failure, ...unblock];
  if (task.blocked?.dependency === dependency) return [failure];
  return [
    failure,
    ...unblock,
    { type: "BlockTask", taskId, dependency: dependency.slice(0, 200), kind: "hard", reason: result.message.slice(0, 1000), at },
  ];
}

function deadlineTimer(task: ExistingTask): SagaAction {
  return { type: "schedule", timer: { kind: "deadline", key: "", dueAt: task.deadline, payload: {} } };
}

function stopRunningWork(task: ExistingTask, reason: string): SagaAction[] {
  return task.steps
    .filter((s) => s.request?.outstanding)
    .map((s) => ({ type: "cancel-work" as const, service: s.request!.service, requestId: s.request!.requestId, reason }));
}

/**
 * Stop the running request, undo the running step and then the completed
 * steps in reverse (those that declare how), then confirm. The running step
 * is undone too: it may have done part of its work (a wait step that
 * reserved and then blocked, a request the worker carried out before the
 * cancel reached it); compensations are idempotent, so undoing nothing is fine.
 */
function cancel(saga: TaskSaga<any>, task: ExistingTask, now: Date): SagaAction[] {
  if (isTerminal(task)) return [...stopRunningWork(task, `task ${task.status}`), { type: "forget-task" }];
  const reason = `task cancelled: ${task.cancellation?.reason ?? "cancelled"}`;
  const touched = task.steps.filter((s) => s.status === "completed" || s.status === "running").map((s) => s.name).reverse();
  const undo = touched.filter((name) => saga.steps[name]?.compensate);
  return [
    ...stopRunningWork(task, reason),
    ...(undo.length ? [{ type: "compensate" as const, steps: undo }] : []),
    { type: "command", command: { type: "ConfirmCancellation", taskId: task.taskId, at: now.toISOString() } },
  ];
}

function unreachable(value: never): never {
  throw new Error(`unhandled task event ${JSON.stringify(value)}`);
}
