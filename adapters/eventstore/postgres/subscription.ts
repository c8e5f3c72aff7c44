import type { EventSubscription, LogPosition, RecordedEvent } from "../port.ts";
import { START } from "../port.ts";
import type { AppendNotifier } from "./append-notifier.ts";
import { positionOf } from "./rows.ts";

export interface SubscriptionSource {
  readAll(options: { after: LogPosition; limit: number }): Promise<RecordedEvent[]>;
  /** True when committed events exist that readAll may not return yet (an older transaction is still open). */
  hasEventsBehindOpenTransaction(): Promise<boolean>;
}

/** With NOTIFY working this only matters when the LISTEN connection is down. */
const SAFETY_POLL_MS = 2_000;
/** While an open transaction (that will not NOTIFY when it ends) holds events back. */
const BLOCKED_POLL_MIN_MS = 2;
const BLOCKED_POLL_MAX_MS = 50;

/**
 * Catch-up, then live. Reads in batches from the cursor; when caught up it
 * sleeps until an append's NOTIFY. Events whose order is not final yet (they
 * committed, but an older transaction is still open) are waited for with a
 * short backoff, because the open transaction may not be an append and then
 * nothing would notify when it ends.
 */
export function createSubscription(
  source: SubscriptionSource,
  notifier: AppendNotifier,
  options: { after?: LogPosition; batchSize?: number },
): EventSubscription {
  const control: { stopped: boolean; wake?: () => void } = { stopped: false };
  const batchSize = options.batchSize ?? 500;

  async function* run(): AsyncGenerator<RecordedEvent> {
    let cursor = options.after ?? START;
    let blockedDelay = BLOCKED_POLL_MIN_MS;
    await notifier.ensureListening();
    while (!control.stopped) {
      // Order matters. Any event committed after `seen` wakes us (signal or NOTIFY).
      // One committed before it that the read below cannot return yet is held back
      // by an older transaction, open already at this check: so `blocked` is true.
      // Checked after the read instead, that transaction could end in between and
      // the event would wait for the safety poll.
      const seen = notifier.generation;
      const blocked = await source.hasEventsBehindOpenTransaction();
      const batch = await source.readAll({ after: cursor, limit: batchSize });
      for (const event of batch) {
        if (control.stopped) return;
        yield event;
        cursor = positionOf(event);
      }
      if (batch.length === batchSize) continue;
      if (blocked) {
        await notifier.waitForChange(seen, blockedDelay, control);
        blockedDelay = Math.min(blockedDelay * 2, BLOCKED_POLL_MAX_MS);
        continue;
      }
      blockedDelay = BLOCKED_POLL_MIN_MS;
      await notifier.waitForChange(seen, SAFETY_POLL_MS, control);
    }
  }

  const generator = run();
  return {
    [Symbol.asyncIterator]: () => generator,
    async stop() {
      control.stopped = true;
      control.wake?.();
      await generator.return(undefined);
    },
  };
}
