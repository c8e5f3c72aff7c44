import type { AllStreamResolvedEvent, AllStreamSubscription } from "@eventstore/db-client";
import type { EventSubscription, RecordedEvent } from "../port.ts";

/** Pauses the server stream while this many mapped events wait for the consumer. */
const HIGH_WATER_MARK = 256;

/**
 * Adapts a client subscription (a Node Readable that never ends by itself) to
 * the port's EventSubscription. It reads through its own queue instead of the
 * Readable's async iterator: after `unsubscribe()` the client cancels the gRPC
 * call but does not end its Readable, so a plain `for await` over it could hang
 * forever; here stop() always finishes the iteration.
 */
export class EsdbEventSubscription implements EventSubscription {
  private source: AllStreamSubscription | undefined;
  private readonly queue: RecordedEvent[] = [];
  private failure: { error: unknown } | undefined;
  private stopped = false;
  private started = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly open: () => AllStreamSubscription,
    /** undefined skips the event (system, foreign or at/before the cursor); throwing fails the subscription. */
    private readonly map: (resolved: AllStreamResolvedEvent) => RecordedEvent | undefined,
    private readonly onStop: (subscription: EsdbEventSubscription) => void,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<RecordedEvent> {
    if (this.started) throw new Error("an EventStoreDB subscription can be iterated only once");
    this.started = true;
    return this.iterate();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.notify();
    this.onStop(this);
    const source = this.source;
    this.source = undefined;
    if (source) {
      source.removeAllListeners("data");
      source.removeAllListeners("error");
      source.on("error", () => {});
      try {
        await source.unsubscribe();
      } finally {
        source.destroy();
      }
    }
  }

  private async *iterate(): AsyncGenerator<RecordedEvent> {
    if (this.stopped) return;
    const source = this.open();
    this.source = source;
    source.on("data", (resolved: AllStreamResolvedEvent) => {
      if (this.stopped) return;
      try {
        const event = this.map(resolved);
        if (event === undefined) return;
        this.queue.push(event);
        if (this.queue.length >= HIGH_WATER_MARK) source.pause();
      } catch (error) {
        this.failure ??= { error };
      }
      this.notify();
    });
    source.on("error", (error: unknown) => {
      this.failure ??= { error };
      this.notify();
    });
    source.on("close", () => {
      if (!this.stopped) this.failure ??= { error: new Error("the EventStoreDB subscription closed unexpectedly") };
      this.notify();
    });
    try {
      for (;;) {
        if (this.stopped) return;
        const next = this.queue.shift();
        if (next !== undefined) {
          if (this.queue.length < HIGH_WATER_MARK / 2 && source.isPaused()) source.resume();
          yield next;
          continue;
        }
        if (this.failure) throw this.failure.error;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      await this.stop();
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
