/**
 * The shutdown half of the composition root: everything `dv up` starts
 * registers how to stop it, and stops in the reverse order (server before
 * runner before store before pool before Postgres). The same list cleans up
 * after a failed start.
 */
export class Lifecycle {
  private readonly closers: Array<{ name: string; close: () => Promise<void> }> = [];
  private closing: Promise<void> | undefined;

  constructor(private readonly report: (line: string) => void) {}

  /** Registers how to stop something that has just started. */
  defer(name: string, close: () => Promise<void> | void): void {
    this.closers.push({ name, close: async () => void (await close()) });
  }

  /** Stops everything registered, newest first; a failing step is reported and the rest still run. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      while (this.closers.length) {
        const { name, close } = this.closers.pop()!;
        try {
          await close();
        } catch (error) {
          this.report(`warning: stopping ${name} failed: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    })();
    return this.closing;
  }
}

/**
 * Signals for a long-running command: the first SIGINT/SIGTERM/SIGHUP asks for
 * a clean stop; another one more than `graceMs` later forces the exit. The
 * grace exists because `npx dv up` gets one Ctrl-C twice: from the terminal
 * and forwarded by npm.
 */
export class ShutdownSignals {
  readonly requested: Promise<NodeJS.Signals>;
  private resolve!: (signal: NodeJS.Signals) => void;
  private first: { signal: NodeJS.Signals; at: number } | undefined;
  private readonly handlers = new Map<NodeJS.Signals, () => void>();

  constructor(
    private readonly onForce: (signal: NodeJS.Signals) => void,
    private readonly graceMs = 1000,
    private readonly now: () => number = Date.now,
  ) {
    this.requested = new Promise((resolve) => (this.resolve = resolve));
  }

  get stopping(): boolean {
    return this.first !== undefined;
  }

  /** Called for each signal received (exported for tests; install() wires it to the process). */
  receive(signal: NodeJS.Signals): void {
    if (!this.first) {
      this.first = { signal, at: this.now() };
      this.resolve(signal);
      return;
    }
    if (this.now() - this.first.at < this.graceMs) return;
    this.onForce(signal);
  }

  install(signals: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"]): this {
    for (const signal of signals) {
      const handler = () => this.receive(signal);
      this.handlers.set(signal, handler);
      process.on(signal, handler);
    }
    return this;
  }

  uninstall(): void {
    for (const [signal, handler] of this.handlers) process.removeListener(signal, handler);
    this.handlers.clear();
  }
}

/** A connection string with its password (and any password parameter) replaced by ****. */
export function maskUrl(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password) url.password = "****";
    for (const key of [...url.searchParams.keys()]) {
      if (/pass|secret|token|key/i.test(key)) url.searchParams.set(key, "****");
    }
    return url.toString();
  } catch {
    // Not a URL (a libpq key=value string): hide every password=... value.
    return connectionString.replace(/(password\s*=\s*)('[^']*'|\S+)/gi, "$1****");
  }
}
