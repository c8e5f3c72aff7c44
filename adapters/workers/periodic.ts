/**
 * A background loop of rounds, as the workers' observers run them: the first
 * round at once, each next one `intervalMs` after the previous one ended (a
 * slow round delays the next, rounds never overlap), a round's error reported
 * and the loop going on. `stop` cancels the wait and lets a running round
 * finish. The timer does not keep the process alive.
 */
export class PeriodicRounds {
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<unknown> | null = null;
  #stopped = true;

  constructor(
    private readonly round: () => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running?.catch(() => {});
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.round()
        .catch((error: unknown) => this.onError(error))
        .finally(() => {
          this.#running = null;
          this.#schedule(this.intervalMs);
        });
    }, delayMs);
    this.#timer.unref?.();
  }
}
