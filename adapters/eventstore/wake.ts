/**
 * A doorbell for loops that tail the log (projection runner, relay): the
 * store's subscription bumps it, a loop notes the generation before it reads
 * and waits on that generation, so a bump between the read and the wait is
 * never missed; the timeout is the loop's safety poll.
 */
export class Wake {
  generation = 0;
  private readonly waiters = new Set<() => void>();

  bump(): void {
    this.generation += 1;
    for (const wake of [...this.waiters]) wake();
  }

  wait(seen: number, timeoutMs: number): Promise<void> {
    if (this.generation !== seen) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
    });
  }
}
