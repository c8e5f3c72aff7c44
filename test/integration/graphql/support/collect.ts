import type { Client } from "graphql-ws";

/**
 * A subscription's results as a list a test can wait on: `next` payloads in
 * arrival order, the error it ended with, whether it completed.
 */
export class Collected<T> {
  readonly items: T[] = [];
  error: unknown;
  completed = false;
  private readonly waiters = new Set<() => void>();
  private dispose: () => void = () => undefined;

  static start<T>(client: Client, query: string, variables: Record<string, unknown> = {}, pick: (data: any) => T = (data) => data): Collected<T> {
    const collected = new Collected<T>();
    collected.dispose = client.subscribe(
      { query, variables },
      {
        next: (result) => {
          if (result.errors) collected.error = result.errors;
          else collected.items.push(pick(result.data));
          collected.wake();
        },
        error: (error) => {
          collected.error = error;
          collected.wake();
        },
        complete: () => {
          collected.completed = true;
          collected.wake();
        },
      },
    );
    return collected;
  }

  /** Resolves once `condition` holds; rejects on a subscription error or after `timeoutMs`. */
  async until(condition: (items: readonly T[]) => boolean, timeoutMs = 15_000): Promise<readonly T[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (condition(this.items)) return this.items;
      if (this.error !== undefined) throw new Error(`subscription failed: ${JSON.stringify(this.error)}`);
      if (this.completed) throw new Error(`subscription completed after ${this.items.length} items`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.items.length} items: ${JSON.stringify(this.items).slice(0, 2000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Resolves with the error the subscription ended with. */
  async failure(timeoutMs = 15_000): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    while (this.error === undefined) {
      if (Date.now() > deadline) throw new Error(`no error after ${timeoutMs} ms; items: ${JSON.stringify(this.items)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.error;
  }

  stop(): void {
    this.dispose();
  }

  private wake(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) waiter();
  }
}
