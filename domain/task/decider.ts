import type { Decider } from "../shared/decider.ts";
import { DomainError } from "../shared/errors.ts";
import type { TaskCommand } from "./commands.ts";
import type { TaskEvent } from "./events.ts";
import {
  decideBlockTask,
  decideConfirmCancellation,
  decideCreateTask,
  decideExpireDeadline,
  decideFailTask,
  decideRequestCancellation,
  decideRetryTask,
  decideSucceedTask,
  decideUnblockTask,
} from "./lifecycle.ts";
import { evolveTask, initialTaskState, type TaskState } from "./state.ts";
import { decideCompleteStep, decideRecordAttemptFailure, decideReportProgress, decideRequestWork, decideStartStep } from "./steps.ts";

/**
 * The Task aggregate: one long operation, its steps, and how it ended.
 * pending -> running (steps) -> succeeded | failed | cancelled, and
 * running <-> blocked while a dependency is unavailable.
 */
function decide(command: TaskCommand, state: TaskState): readonly TaskEvent[] | DomainError {
  if (command.type === "CreateTask") return decideCreateTask(command, state);
  if (!state.exists) return new DomainError("task_not_found", `task ${command.taskId} does not exist`, { taskId: command.taskId });
  switch (command.type) {
    case "StartStep":
      return decideStartStep(command, state);
    case "RequestWork":
      return decideRequestWork(command, state);
    case "ReportProgress":
      return decideReportProgress(command, state);
    case "CompleteStep":
      return decideCompleteStep(command, state);
    case "RecordAttemptFailure":
      return decideRecordAttemptFailure(command, state);
    case "BlockTask":
      return decideBlockTask(command, state);
    case "UnblockTask":
      return decideUnblockTask(command, state);
    case "SucceedTask":
      return decideSucceedTask(command, state);
    case "FailTask":
      return decideFailTask(command, state);
    case "RequestCancellation":
      return decideRequestCancellation(command, state);
    case "ConfirmCancellation":
      return decideConfirmCancellation(command, state);
    case "RetryTask":
      return decideRetryTask(command, state);
    case "ExpireDeadline":
      return decideExpireDeadline(command, state);
    default:
      return unreachable(command);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled task command ${JSON.stringify(value)}`);
}

export const taskDecider: Decider<TaskCommand, TaskEvent, TaskState> = {
  initialState: initialTaskState,
  decide,
  evolve: evolveTask,
};
