/** Each task is its own aggregate, in stream `task-<taskId>`. */
export const TASK_STREAM_PREFIX = "task-";

export function taskStreamId(taskId: string): string {
  return `${TASK_STREAM_PREFIX}${taskId}`;
}

/**
 * A work request's id names its task, step and attempt, so a request published
 * again after a crash is the same message (NATS dedups by it) and a worker's
 * late answer to an older attempt is recognisably stale.
 */
export function workRequestId(taskId: string, step: string, attempt: number): string {
  return `${taskId}:${step}:${attempt}`;
}
