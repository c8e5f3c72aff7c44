import { DomainError } from "../shared/errors.ts";
import type { TaskCommandOf } from "./commands.ts";
import { taskEvent, type TaskEvent } from "./events.ts";
import { currentStep, isTerminal, type ExistingTask, type TaskState } from "./state.ts";

/**
 * Task lifecycle rules: creation, blocking, the outcomes, cancellation, retry
 * and the deadline. Commands a saga sends (block, succeed, fail, expire)
 * decide nothing on a finished task; commands a user sends (cancel, retry)
 * are refused with a reason instead, so the user learns why nothing happened.
 */

export function decideCreateTask(command: TaskCommandOf<"CreateTask">, state: TaskState): TaskEvent[] | DomainError {
  if (state.exists) {
    if (state.kind === command.kind && state.resource.id === command.resource.id) return []; // the same request again
    return new DomainError("task_exists", `task ${command.taskId} exists already (${state.kind} on ${state.resource.type} ${state.resource.id})`, {
      taskId: command.taskId,
    });
  }
  if (Date.parse(command.deadline) <= Date.parse(command.at)) {
    return new DomainError("deadline_in_past", `the deadline ${command.deadline} is not after ${command.at}`, { deadline: command.deadline });
  }
  const names = command.steps.map((s) => s.name);
  const duplicate = names.find((name, index) => names.indexOf(name) !== index);
  if (duplicate) return new DomainError("duplicate_step", `step ${duplicate} appears twice in the plan`, { step: duplicate });
  return [
    taskEvent("TaskCreated", {
      taskId: command.taskId,
      kind: command.kind,
      title: command.title,
      resource: command.resource,
      scope: command.scope,
      steps: command.steps,
      deadline: command.deadline,
      maxAttempts: command.maxAttempts,
      input: command.input,
    }),
  ];
}

export function decideBlockTask(command: TaskCommandOf<"BlockTask">, task: ExistingTask): TaskEvent[] {
  if (isTerminal(task) || task.blocked) return [];
  return [
    taskEvent("TaskBlocked", {
      taskId: task.taskId,
      step: currentStep(task)?.name ?? null,
      dependency: command.dependency,
      kind: command.kind,
      reason: command.reason,
      since: command.at,
    }),
  ];
}

export function decideUnblockTask(command: TaskCommandOf<"UnblockTask">, task: ExistingTask): TaskEvent[] {
  if (isTerminal(task) || task.blocked?.dependency !== command.dependency) return [];
  return [taskEvent("TaskUnblocked", { taskId: task.taskId, dependency: command.dependency, blockedSince: task.blocked.since })];
}

export function decideSucceedTask(command: TaskCommandOf<"SucceedTask">, task: ExistingTask): TaskEvent[] | DomainError {
  if (isTerminal(task)) return [];
  const unfinished = task.steps.filter((s) => s.status !== "completed").map((s) => s.name);
  if (unfinished.length > 0) {
    return new DomainError("steps_incomplete", `task ${task.taskId} cannot succeed with steps not completed: ${unfinished.join(", ")}`, {
      taskId: task.taskId,
      steps: unfinished,
    });
  }
  return [taskEvent("TaskSucceeded", { taskId: task.taskId, output: command.output })];
}

export function decideFailTask(command: TaskCommandOf<"FailTask">, task: ExistingTask): TaskEvent[] {
  if (isTerminal(task)) return [];
  return [taskEvent("TaskFailed", { taskId: task.taskId, step: currentStep(task)?.name ?? null, code: command.code, reason: command.reason })];
}

export function decideRequestCancellation(command: TaskCommandOf<"RequestCancellation">, task: ExistingTask): TaskEvent[] | DomainError {
  if (isTerminal(task)) return finished(task, "cancel");
  if (task.cancellation) return [];
  const requested = taskEvent("TaskCancellationRequested", { taskId: task.taskId, reason: command.reason });
  // Nothing has run yet: there is nothing to stop or undo.
  if (task.steps.every((s) => s.status === "pending")) {
    return [requested, taskEvent("TaskCancelled", { taskId: task.taskId, reason: command.reason })];
  }
  return [requested];
}

export function decideConfirmCancellation(_command: TaskCommandOf<"ConfirmCancellation">, task: ExistingTask): TaskEvent[] | DomainError {
  if (isTerminal(task)) return [];
  if (!task.cancellation) {
    return new DomainError("cancellation_not_requested", `task ${task.taskId} was not asked to cancel`, { taskId: task.taskId });
  }
  return [taskEvent("TaskCancelled", { taskId: task.taskId, reason: task.cancellation.reason })];
}

export function decideRetryTask(command: TaskCommandOf<"RetryTask">, task: ExistingTask): TaskEvent[] | DomainError {
  if (task.status !== "failed") {
    if (isTerminal(task)) return finished(task, "retry");
    return new DomainError("task_not_failed", `task ${task.taskId} is ${task.status}; only a failed task can be retried`, {
      taskId: task.taskId,
      status: task.status,
    });
  }
  if (Date.parse(command.deadline) <= Date.parse(command.at)) {
    return new DomainError("deadline_in_past", `the deadline ${command.deadline} is not after ${command.at}`, { deadline: command.deadline });
  }
  const step = task.steps.find((s) => s.status === "failed") ?? task.steps.find((s) => s.status !== "completed");
  if (!step) return new DomainError("nothing_to_retry", `task ${task.taskId} has no unfinished step`, { taskId: task.taskId });
  return [taskEvent("TaskRetried", { taskId: task.taskId, step: step.name, deadline: command.deadline })];
}

export function decideExpireDeadline(command: TaskCommandOf<"ExpireDeadline">, task: ExistingTask): TaskEvent[] {
  if (isTerminal(task) || Date.parse(command.at) < Date.parse(task.deadline)) return [];
  const step = currentStep(task);
  const where = step ? `in step ${step.name}` : "before any step started";
  const why = task.blocked
    ? `; blocked on ${task.blocked.dependency} since ${task.blocked.since}: ${task.blocked.reason}`
    : step?.lastError
      ? `; last error: ${step.lastError.message}`
      : step?.message
        ? `; last progress: ${step.message}`
        : "";
  return [
    taskEvent("TaskFailed", {
      taskId: task.taskId,
      step: step?.name ?? null,
      code: "deadline_exceeded",
      reason: `deadline ${task.deadline} passed while ${task.status} ${where}${why}`,
    }),
  ];
}

function finished(task: ExistingTask, what: string): DomainError {
  return new DomainError("task_finished", `task ${task.taskId} has already ${task.status}; cannot ${what} it`, {
    taskId: task.taskId,
    status: task.status,
  });
}
