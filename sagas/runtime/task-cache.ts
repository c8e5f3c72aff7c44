import type { HeldStream } from "../../commands/pipeline.ts";
import type { Scope } from "../../domain/shared/envelope.ts";
import type { ExistingTask } from "../../domain/task/state.ts";

/**
 * What the runtime holds about a task between messages: its state folded up
 * to `held.version` (from a read, or from the runtime's own appends), and the
 * stream positions of events it already reacted to in full right after
 * appending them (their relayed copies then need nothing). Only a cache: a
 * restart starts empty, and an entry is dropped on any error; a stream that
 * moved under it shows as a ConcurrencyError on the next append, or as a
 * relayed event past `held.version`.
 */
export interface CachedTask {
  readonly held: HeldStream<ExistingTask>;
  readonly scope: Scope;
  readonly reacted: ReadonlySet<number>;
}

/** A bounded map, least recently used out first. */
export class TaskCache {
  private readonly entries = new Map<string, CachedTask>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  get(taskId: string): CachedTask | undefined {
    const entry = this.entries.get(taskId);
    if (entry) {
      this.entries.delete(taskId);
      this.entries.set(taskId, entry);
    }
    return entry;
  }

  /** Without touching recency. */
  peek(taskId: string): CachedTask | undefined {
    return this.entries.get(taskId);
  }

  set(taskId: string, entry: CachedTask): void {
    if (this.capacity <= 0) return;
    this.entries.delete(taskId);
    this.entries.set(taskId, entry);
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  delete(taskId: string): void {
    this.entries.delete(taskId);
  }
}

/** A stream version as a number (-1: no stream), to compare. */
export function versionNumber(version: HeldStream<unknown>["version"]): number {
  return version === "no_stream" ? -1 : version;
}
