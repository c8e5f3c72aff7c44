import { afterAll, describe, expect, it } from "vitest";
import { AppendNotifier } from "../../../adapters/eventstore/postgres/append-notifier.ts";
import { createSubscription, type SubscriptionSource } from "../../../adapters/eventstore/postgres/subscription.ts";
import type { LogPosition, RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { ADMIN_URL } from "../../support/postgres.ts";

const event: RecordedEvent = {
  id: "01a20000-0000-7000-8000-000000000001",
  type: "Happened",
  schemaVersion: 1,
  streamId: "s-1",
  streamPosition: 0,
  globalPosition: 10n,
  transactionId: 100n,
  occurredAt: new Date(),
  data: {},
  correlationId: "c",
  causationId: null,
  actor: { kind: "system", id: "t" },
  scope: { tenantId: "t" },
  datacenter: null,
  hash: "00",
};

/**
 * An event committed before the subscriber looked, held back by an older open
 * transaction that ends right after the subscriber's read: nothing will signal
 * again, so the subscriber must already know it was blocked and look again soon.
 */
describe("subscription wake-ups", () => {
  const notifier = new AppendNotifier(ADMIN_URL);
  afterAll(() => notifier.close());

  it("delivers an event whose blocking transaction ends right after a read, without waiting for the safety poll", async () => {
    let blockingTransactionOpen = true;
    const source: SubscriptionSource = {
      async readAll({ after }: { after: LogPosition }) {
        if (blockingTransactionOpen) {
          blockingTransactionOpen = false; // it commits just after this read
          return [];
        }
        return after.globalPosition < event.globalPosition ? [event] : [];
      },
      async hasEventsBehindOpenTransaction() {
        return blockingTransactionOpen;
      },
    };
    const subscription = createSubscription(source, notifier, {});
    const started = Date.now();
    const iterator = subscription[Symbol.asyncIterator]();
    const first = await iterator.next();
    const waited = Date.now() - started;
    await subscription.stop();
    expect(first.value).toMatchObject({ id: event.id });
    expect(waited).toBeLessThan(1_000); // the safety poll is 2 s
  });
});
