/**
 * One session at a time per BMC, any number of BMCs at once.
 *
 * BMCs have few session slots and many handle concurrent sessions badly
 * (ipmi_sim runs its chassis program synchronously; real BMCs drop or
 * duplicate requests). So every exchange with a BMC runs inside `run(key)`,
 * keyed by the BMC: work for one key runs strictly in call order, one after
 * the other; work for different keys runs in parallel. A failing task does
 * not stop the ones queued behind it.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    // `previous` only ever resolves (it is a chain of `done`s), so the queue never breaks.
    const tail = previous.then(() => done);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await work();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Keys with work running or queued (idle keys are forgotten). */
  get busyKeys(): number {
    return this.#tails.size;
  }
}

/** The lock every BMC driver in this process shares unless it is given its own. */
export const bmcSessions = new KeyedMutex();

/** The lock key of one BMC. */
export function sessionKey(driver: string, target: string): string {
  return `${driver}://${target}`;
}
