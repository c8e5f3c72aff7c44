import { connect, type NatsConnection } from "@nats-io/transport-node";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

export function natsUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.NATS_URL?.trim() || DEFAULT_NATS_URL;
}

export interface NatsLinkOptions {
  /** One URL, a comma-separated list, or a list (a cluster's seeds). */
  readonly servers: string | readonly string[];
  /** Connection name shown by the server (`nats server report connections`), e.g. "dv-relay". */
  readonly name: string;
  /** Pause between first-connect attempts and between reconnects (default 1000 ms, with jitter). */
  readonly reconnectWaitMs?: number;
  /** Told about connects, disconnects and reconnects (for a log line). */
  readonly onStatus?: (event: NatsLinkEvent) => void;
}

export type NatsLinkEvent =
  | { readonly type: "connected"; readonly server: string }
  | { readonly type: "disconnected"; readonly server: string }
  | { readonly type: "reconnected"; readonly server: string }
  | { readonly type: "error"; readonly error: string };

/**
 * One NATS connection that never gives up: the first connect is retried
 * until a server answers (like nats.js `waitOnFirstConnect`, but stoppable:
 * a pending waitOnFirstConnect cannot be cancelled), and once connected the
 * client reconnects forever (`maxReconnectAttempts: -1`). Nothing here
 * throws because NATS is down: callers await `ready()` or check `connected`.
 *
 * Messages published while disconnected are buffered by the client and sent
 * on reconnect; JetStream publishers should rather wait for `connected`
 * (the relay does) and rely on Nats-Msg-Id to drop copies.
 */
export class NatsLink {
  private nc: NatsConnection | null = null;
  private isConnected = false;
  private closed = false;
  private readonly firstConnect: Promise<NatsConnection | null>;
  private wakeDial: (() => void) | null = null;
  private readonly changeWaiters = new Set<() => void>();
  lastError: string | null = null;

  constructor(readonly options: NatsLinkOptions) {
    this.firstConnect = this.dial();
  }

  /** Whether the client is connected right now. */
  get connected(): boolean {
    return this.isConnected && !this.closed;
  }

  /** The connection once the first connect succeeded; null before (and after close). */
  get connection(): NatsConnection | null {
    return this.closed ? null : this.nc;
  }

  /** Resolves with the connection once the first connect succeeded; with null if closed first. */
  ready(): Promise<NatsConnection | null> {
    return this.firstConnect;
  }

  /** Resolves when `connected` may have changed (or after timeoutMs). */
  waitForChange(timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.changeWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.changeWaiters.add(done);
    });
  }

  /** Drains and closes the connection, or stops trying to make one. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wakeDial?.();
    this.changed();
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      await nc.drain().catch(() => nc.close());
    }
    await this.firstConnect;
  }

  private async dial(): Promise<NatsConnection | null> {
    const servers = typeof this.options.servers === "string" ? this.options.servers.split(",").map((s) => s.trim()) : [...this.options.servers];
    const wait = this.options.reconnectWaitMs ?? 1000;
    while (!this.closed) {
      try {
        const nc = await connect({
          servers,
          name: this.options.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: wait,
          reconnectJitter: Math.round(wait / 5),
          timeout: 5000,
          pingInterval: 10_000,
        });
        if (this.closed) {
          await nc.close().catch(() => {});
          return null;
        }
        this.nc = nc;
        this.isConnected = true;
        this.lastError = null;
        this.options.onStatus?.({ type: "connected", server: nc.getServer() });
        this.changed();
        void this.watch(nc);
        return nc;
      } catch (error) {
        this.lastError = error instanceof Error ? error.message : String(error);
        this.options.onStatus?.({ type: "error", error: this.lastError });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, wait + Math.random() * (wait / 5));
          function done() {
            clearTimeout(timer);
            resolve();
          }
          this.wakeDial = done;
        });
        this.wakeDial = null;
      }
    }
    return null;
  }

  private async watch(nc: NatsConnection): Promise<void> {
    void nc.closed().then((error) => {
      this.isConnected = false;
      if (error) this.lastError = error.message;
      this.changed();
    });
    for await (const status of nc.status()) {
      switch (status.type) {
        case "disconnect":
          this.isConnected = false;
          this.lastError = `disconnected from ${status.server}`;
          this.options.onStatus?.({ type: "disconnected", server: status.server });
          this.changed();
          break;
        case "reconnect":
          this.isConnected = true;
          this.lastError = null;
          this.options.onStatus?.({ type: "reconnected", server: status.server });
          this.changed();
          break;
        case "error":
          this.lastError = String(status.error);
          break;
        default:
          break;
      }
    }
  }

  private changed(): void {
    for (const wake of [...this.changeWaiters]) wake();
  }
}
