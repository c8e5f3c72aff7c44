import type { Scope } from "../../domain/shared/envelope.ts";
import { TaskCommandSchema, type TaskCommand, type TaskCommandInput, type TaskScope } from "../../domain/task/commands.ts";
import { taskDecider } from "../../domain/task/decider.ts";
import { taskEventSchemas, type TaskEvent } from "../../domain/task/events.ts";
import type { TaskState } from "../../domain/task/state.ts";
import { taskStreamId } from "../../domain/task/stream.ts";
import type { CommandContext, CommandHandler, CommandResult, ExecuteOptions } from "../handler.ts";
import { executeCommand, type CommandStore } from "../pipeline.ts";

/** The envelope scope of a task's events: the task's own tenant/project/environment. */
export function taskEnvelopeScope(scope: TaskScope): Scope {
  return {
    tenantId: scope.tenantId,
    ...(scope.projectId ? { projectId: scope.projectId } : {}),
    ...(scope.environmentId ? { environmentId: scope.environmentId } : {}),
  };
}

/**
 * Task commands go to stream `task-<taskId>`. Only CreateTask names the
 * scope; later commands are filed under the scope the caller passes in the
 * context (the saga runtime and the API know the task's scope from its state
 * or read model).
 */
export const taskHandler: CommandHandler<TaskCommand, TaskEvent, TaskState> = {
  name: "sentral.task",
  commandSchema: TaskCommandSchema,
  decider: taskDecider,
  streamId: (command) => taskStreamId(command.taskId),
  eventSchemas: taskEventSchemas,
  scope: (command) => (command.type === "CreateTask" ? taskEnvelopeScope(command.scope) : undefined),
};

export function executeTaskCommand(
  store: CommandStore,
  input: TaskCommandInput | unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<TaskEvent>> {
  return executeCommand(store, taskHandler, input, context, options);
}
