import pg from "pg";

export const APPEND_CHANNEL = "eventstore_appended";

/**
 * One LISTEN connection per store, shared by all its subscriptions. Each
 * NOTIFY bumps `generation`; a reader that noted the generation before
 * reading can tell whether it missed a wake-up. A lost connection is
 * re-established, and every waiter is woken to re-read, because
 * notifications sent while it was down are gone.
 *
 * `signal()` is the sending side for appends that committed through the
 * batcher: it wakes this process's readers at once and sends one NOTIFY for
 * other processes, coalescing signals that arrive while one is in flight.
 */
export class AppendNotifier {
  generation = 0;
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private readonly waiters = new Set<() => void>();
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;

  private sender: pg.Client | undefined;
  private sending = false;
  private pendingSignal = false;

  constructor(private readonly connectionString: string) {}

  signal(): void {
    this.wakeAll();
    this.pendingSignal = true;
    if (!this.sending && !this.closed) void this.flushSignals();
  }

  private async flushSignals(): Promise<void> {
    this.sending = true;
    try {
      while (this.pendingSignal && !this.closed) {
        this.pendingSignal = false;
        try {
          if (!this.sender) {
            const sender = new pg.Client({ connectionString: this.connectionString });
            sender.on("error", () => {
              if (this.sender === sender) this.sender = undefined;
            });
            await sender.connect();
            // A wake-up needs no durability: its transaction must not wait for a WAL flush.
            await sender.query("set synchronous_commit = off");
            // close() ran while we connected: it could not end this client, so we must (or the process never exits).
            if (this.closed) {
              await sender.end().catch(() => {});
              break;
            }
            this.sender = sender;
          }
          await this.sender.query(`select pg_notify('${APPEND_CHANNEL}', '')`);
        } catch {
          // Readers elsewhere fall back to their safety poll; the next signal reconnects.
          const broken = this.sender;
          this.sender = undefined;
          await broken?.end().catch(() => {});
          break;
        }
      }
    } finally {
      this.sending = false;
    }
  }

  /** Resolves once LISTEN is active, so no append after it can go unnoticed. */
  ensureListening(): Promise<void> {
    if (this.client || this.closed) return Promise.resolve();
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Waits for a generation newer than `seen`, or until the timeout. */
  waitForChange(seen: number, timeoutMs: number, abort?: { stopped: boolean; wake?: () => void }): Promise<void> {
    if (this.generation !== seen || abort?.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
      if (abort) abort.wake = done;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.wakeAll();
    const client = this.client;
    const sender = this.sender;
    this.client = undefined;
    this.sender = undefined;
    await client?.end().catch(() => {});
    await sender?.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString });
    client.on("notification", () => this.wakeAll());
    client.on("error", () => this.lost(client));
    client.on("end", () => this.lost(client));
    try {
      await client.connect();
      await client.query(`listen ${APPEND_CHANNEL}`);
      this.client = client;
    } catch {
      await client.end().catch(() => {});
      this.scheduleReconnect();
    }
    this.wakeAll();
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.wakeAll();
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.ensureListening();
    }, 500);
  }

  private wakeAll(): void {
    this.generation += 1;
    for (const wake of [...this.waiters]) wake();
  }
}
