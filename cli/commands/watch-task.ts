import type { Command } from "commander";
import { formatJson } from "../core/output.ts";
import type { Runtime } from "../core/runtime.ts";
import { outcomeReason, waitForTask } from "../core/wait.ts";

/**
 * Follows the task: progress lines on stderr (table) or every state as a JSON
 * line on stdout (json); sets the exit code by the outcome. Ctrl-C stops
 * following (130), never the task.
 */
export async function watch(runtime: Runtime, command: Command, taskId: string, options: { appearWithinMs?: number } = {}): Promise<void> {
  const client = await runtime.client(command);
  const format = runtime.format(command);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    const result = await waitForTask(client, taskId, {
      ...options,
      signal: controller.signal,
      note: format === "table" ? (line) => runtime.err(`${line}\n`) : undefined,
      onUpdate: format === "json" ? (task) => runtime.out(formatJson(task).replace(/\n\s*/g, "") + "\n") : undefined,
    });
    if (result.outcome && result.outcome !== "succeeded") runtime.err(`error: task ${taskId} ${outcomeReason(result.task)}\n`);
    runtime.exitCode = result.exitCode;
  } finally {
    process.removeListener("SIGINT", stop);
    process.removeListener("SIGTERM", stop);
  }
}
