import type { FastifyBaseLogger } from "fastify";
import type { EventSubscription, LogPosition, RecordedEvent } from "../../adapters/eventstore/port.ts";
import { formatPosition, parsePosition } from "../../adapters/eventstore/position.ts";
import { ClientError } from "./errors.ts";

/**
 * Subscriptions are views of the event log (store.subscribe: catch up from
 * the cursor, then live), filtered per subscriber. Ordering and "no gaps, no
 * repeats" come from the store: it yields events in log order and only once
 * their order is final, so resuming after the last position received is exact.
 *
 * Each subscription tails the log on its own (one readAll per wake-up per
 * subscriber); fine for operators and dashboards, a shared fan-out is the
 * next step when subscribers number in the thousands.
 */
export function startPosition(afterPosition: string | null | undefined, head: () => Promise<LogPosition>): Promise<LogPosition> {
  if (afterPosition === null || afterPosition === undefined) return head();
  try {
    return Promise.resolve(parsePosition(afterPosition));
  } catch {
    throw new ClientError(
      "BAD_USER_INPUT",
      `afterPosition ${JSON.stringify(afterPosition).slice(0, 60)} is not a log position "<transactionId>.<globalPosition>"`,
      { argument: "afterPosition" },
    );
  }
}

/**
 * The subscription as the async iterator graphql-js consumes: only events
 * `select` maps to a payload are delivered. `return()` (the client
 * unsubscribed or the socket closed) stops the store subscription at once,
 * even while it waits for the next append. A failing read ends the
 * subscription with an error naming where to resume, never with the cause.
 */
export function filteredEvents<Payload>(
  subscription: EventSubscription,
  select: (event: RecordedEvent) => Payload | undefined,
  log: FastifyBaseLogger,
  start: LogPosition,
): AsyncIterableIterator<Payload> {
  const source = subscription[Symbol.asyncIterator]();
  let last = start;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await subscription.stop();
  };
  const iterator: AsyncIterableIterator<Payload> = {
    async next(): Promise<IteratorResult<Payload>> {
      for (;;) {
        if (stopped) return { value: undefined, done: true };
        let step: IteratorResult<RecordedEvent>;
        try {
          step = await source.next();
        } catch (error) {
          log.error({ err: error, after: formatPosition(last) }, "event subscription failed");
          await stop().catch(() => undefined);
          throw new ClientError(
            "INTERNAL_SERVER_ERROR",
            `the event stream failed; subscribe again with afterPosition "${formatPosition(last)}"`,
            { afterPosition: formatPosition(last) },
          );
        }
        if (step.done) return { value: undefined, done: true };
        last = { transactionId: step.value.transactionId, globalPosition: step.value.globalPosition };
        const payload = select(step.value);
        if (payload !== undefined) return { value: payload, done: false };
      }
    },
    async return(): Promise<IteratorResult<Payload>> {
      await stop();
      return { value: undefined, done: true };
    },
    async throw(error?: unknown): Promise<IteratorResult<Payload>> {
      await stop();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
