import { DomainError } from "../shared/errors.ts";
import type { TaskCommandOf } from "./commands.ts";
import { taskEvent, type TaskEvent } from "./events.ts";
import { isTerminal, type ExistingTask, type StepState } from "./state.ts";
import { workRequestId } from "./stream.ts";

/**
 * Step rules. Sagas send these commands in reaction to messages that NATS may
 * deliver more than once, so each is idempotent: a command whose effect
 * already holds (or that answers an older attempt) decides nothing.
 * On a finished task they decide nothing either: a late answer is not an error.
 */

function requireStep(task: ExistingTask, name: string): StepState | DomainError {
  const step = task.steps.find((s) => s.name === name);
  if (step) return step;
  return new DomainError("unknown_step", `task ${task.taskId} has no step ${name}`, {
    taskId: task.taskId,
    step: name,
    steps: task.steps.map((s) => s.name),
  });
}

export function decideStartStep(command: TaskCommandOf<"StartStep">, task: ExistingTask): TaskEvent[] | DomainError {
  const step = requireStep(task, command.step);
  if (step instanceof DomainError) return step;
  if (isTerminal(task) || task.cancellation || step.status !== "pending") return [];
  const index = task.steps.indexOf(step);
  const unfinished = task.steps.slice(0, index).find((s) => s.status !== "completed");
  if (unfinished) {
    return new DomainError("step_out_of_order", `step ${step.name} cannot start before ${unfinished.name} completes`, {
      taskId: task.taskId,
      step: step.name,
      waitingFor: unfinished.name,
    });
  }
  const started = task.status === "pending" ? [taskEvent("TaskStarted", { taskId: task.taskId })] : [];
  return [...started, taskEvent("TaskStepStarted", { taskId: task.taskId, step: step.name })];
}

export function decideRequestWork(command: TaskCommandOf<"RequestWork">, task: ExistingTask): TaskEvent[] | DomainError {
  const step = requireStep(task, command.step);
  if (step instanceof DomainError) return step;
  if (isTerminal(task) || task.cancellation || step.status !== "running") return [];
  if (step.request?.outstanding) return []; // asked already; the worker will answer that request
  const attempt = step.attempts + 1;
  return [
    taskEvent("TaskWorkRequested", {
      taskId: task.taskId,
      step: step.name,
      attempt,
      requestId: workRequestId(task.taskId, step.name, attempt),
      service: command.service,
      action: command.action,
      datacenter: command.datacenter,
      ...(command.target ? { target: command.target } : {}),
      payload: command.payload,
    }),
  ];
}

export function decideReportProgress(command: TaskCommandOf<"ReportProgress">, task: ExistingTask): TaskEvent[] | DomainError {
  const step = requireStep(task, command.step);
  if (step instanceof DomainError) return step;
  if (isTerminal(task) || step.status !== "running") return [];
  if (step.percent === command.percent && step.message === command.message) return [];
  return [taskEvent("TaskStepProgressed", { taskId: task.taskId, step: step.name, percent: command.percent, message: command.message })];
}

export function decideCompleteStep(command: TaskCommandOf<"CompleteStep">, task: ExistingTask): TaskEvent[] | DomainError {
  const step = requireStep(task, command.step);
  if (step instanceof DomainError) return step;
  if (isTerminal(task) || step.status !== "running") return [];
  if (command.requestId !== undefined && command.requestId !== step.request?.requestId) return []; // an older attempt's answer
  const unblocked =
    task.blocked && task.blocked.step === step.name
      ? [taskEvent("TaskUnblocked", { taskId: task.taskId, dependency: task.blocked.dependency, blockedSince: task.blocked.since })]
      : [];
  return [...unblocked, taskEvent("TaskStepCompleted", { taskId: task.taskId, step: step.name, output: command.output })];
}

export function decideRecordAttemptFailure(
  command: TaskCommandOf<"RecordAttemptFailure">,
  task: ExistingTask,
): TaskEvent[] | DomainError {
  const step = requireStep(task, command.step);
  if (step instanceof DomainError) return step;
  if (isTerminal(task) || step.status !== "running") return [];
  if (!step.request?.outstanding || step.request.requestId !== command.requestId) return []; // stale or already recorded
  const failed = taskEvent("TaskStepAttemptFailed", {
    taskId: task.taskId,
    step: step.name,
    attempt: step.request.attempt,
    requestId: command.requestId,
    code: command.code,
    message: command.message,
    retryAt: command.retryAt,
  });
  const exhausted = step.attemptsInBudget >= task.maxAttempts;
  if (command.transient && !exhausted) return [failed];
  const reason = command.transient
    ? `${command.message} (gave up after ${step.attemptsInBudget} attempts)`
    : command.message;
  return [failed, taskEvent("TaskFailed", { taskId: task.taskId, step: step.name, code: command.code, reason })];
}
