import type { TaskCommandInput } from "../../domain/task/commands.ts";
import type { TaskEvent } from "../../domain/task/events.ts";
import { isTerminal, type ExistingTask } from "../../domain/task/state.ts";
import { isWorkStep, type TaskSaga } from "./types.ts";

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
      readonly payload: Record<string, unknown>;
    }
  | { readonly type: "run-step"; readonly step: string }
  | { readonly type: "schedule"; readonly timer: TimerSpec }
  /** Forget the task's timers and outstanding work (it has ended). */
  | { readonly type: "forget-task" }
  | { readonly type: "forget-work"; readonly requestId: string }
  | { readonly type: "cancel-work"; readonly service: string; readonly requestId: string; readonly reason: string }
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
        { type: "publish-work", requestId: d.requestId, step: d.step, attempt: d.attempt, service: d.service, action: d.action, datacenter: d.datacenter, payload: d.payload },
      ];
    }
    case "TaskCancellationRequested":
      return cancel(saga, task, now);
    case "TaskSucceeded":
    case "TaskFailed":
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
  if (!isWorkStep(definition)) return [{ type: "run-step", step: step.name }];
  if (step.request?.outstanding) return []; // the worker will answer it
  if (step.request && step.retryAt && Date.parse(step.retryAt) > now.getTime()) {
    return [{ type: "schedule", timer: { kind: "retry", key: step.name, dueAt: step.retryAt, payload: { step: step.name } } }];
  }
  return [requestWork(saga, task, step.name, at)];
}

/** The RequestWork command for a step, from the saga's declaration. */
export function requestWork(saga: TaskSaga<any>, task: ExistingTask, stepName: string, at: string): SagaAction {
  const definition = saga.steps[stepName];
  if (!definition || !isWorkStep(definition)) throw new Error(`saga ${saga.kind}: step ${stepName} is not a work step`);
  const spec = definition.work(task);
  return {
    type: "command",
    command: {
      type: "RequestWork",
      taskId: task.taskId,
      step: stepName,
      service: spec.service,
      action: spec.action,
      datacenter: spec.datacenter,
      payload: spec.payload ?? {},
      at,
    },
  };
}

/** A retry timer fired: ask again if the step still waits for a retry; otherwise nothing. */
export function reactToRetryTimer(saga: TaskSaga<any>, task: ExistingTask, stepName: string, now: Date): SagaAction[] {
  if (isTerminal(task) || task.cancellation) return [];
  const step = task.steps.find((s) => s.name === stepName);
  if (!step || step.status !== "running" || step.request?.outstanding) return [];
  return [requestWork(saga, task, stepName, now.toISOString())];
}

function deadlineTimer(task: ExistingTask): SagaAction {
  return { type: "schedule", timer: { kind: "deadline", key: "", dueAt: task.deadline, payload: {} } };
}

function stopRunningWork(task: ExistingTask, reason: string): SagaAction[] {
  return task.steps
    .filter((s) => s.request?.outstanding)
    .map((s) => ({ type: "cancel-work" as const, service: s.request!.service, requestId: s.request!.requestId, reason }));
}

/** Stop the running request, undo completed steps in reverse (those that declare how), then confirm. */
function cancel(saga: TaskSaga<any>, task: ExistingTask, now: Date): SagaAction[] {
  if (isTerminal(task)) return [...stopRunningWork(task, `task ${task.status}`), { type: "forget-task" }];
  const reason = `task cancelled: ${task.cancellation?.reason ?? "cancelled"}`;
  const completed = task.steps.filter((s) => s.status === "completed").map((s) => s.name).reverse();
  const undo = completed.filter((name) => saga.steps[name]?.compensate);
  return [
    ...stopRunningWork(task, reason),
    ...(undo.length ? [{ type: "compensate" as const, steps: undo }] : []),
    { type: "command", command: { type: "ConfirmCancellation", taskId: task.taskId, at: now.toISOString() } },
  ];
}

function unreachable(value: never): never {
  throw new Error(`unhandled task event ${JSON.stringify(value)}`);
}
