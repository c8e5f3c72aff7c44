import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import type { NatsNamespace } from "../nats/namespace.ts";
import type { Consumption, Delivery } from "./port.ts";

export interface DurableConsumerSpec {
  readonly nc: NatsConnection;
  readonly namespace: NatsNamespace;
  /** Qualified stream name. */
  readonly stream: string;
  /** Qualified durable name. */
  readonly durable: string;
  /** Qualified filter subject. */
  readonly filterSubject: string;
  readonly maxInFlight: number;
  readonly ackWaitMs: number;
  readonly onError?: (error: unknown) => void;
}

/**
 * Creates the durable consumer when missing (explicit ack, no delivery limit:
 * the handler decides when a message is poison, so it can dead-letter it
 * with the error instead of the server silently giving up), or updates its
 * ack wait and in-flight limit.
 */
export async function ensureDurableConsumer(jsm: JetStreamManager, spec: Omit<DurableConsumerSpec, "nc" | "namespace" | "onError">): Promise<void> {
  const config = {
    durable_name: spec.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: spec.filterSubject,
    ack_wait: nanos(spec.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: Math.max(spec.maxInFlight * 4, 256),
  };
  const existing = await jsm.consumers.info(spec.stream, spec.durable).catch(() => null);
  if (!existing) {
    try {
      await jsm.consumers.add(spec.stream, config);
      return;
    } catch (error) {
      if (!(await jsm.consumers.info(spec.stream, spec.durable).catch(() => null))) throw error;
    }
  }
  await jsm.consumers.update(spec.stream, spec.durable, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending }).catch(() => {});
}

/**
 * A durable pull consumer feeding `handle`, at most maxInFlight messages at
 * once. Survives NATS going away: consume() re-pulls after a reconnect, and
 * anything that ends the iteration makes the loop set it up again.
 */
export function runDurableConsumer(spec: DurableConsumerSpec, handle: (delivery: Delivery) => Promise<void>): Consumption {
  let running = true;
  let current: { stop(): void } | null = null;
  const inFlight = new Set<Promise<void>>();
  let wake: (() => void) | null = null;
  let stopWait: (() => void) | null = null;

  const loop = (async () => {
    while (running) {
      try {
        const jsm = await jetstreamManager(spec.nc, { timeout: 5_000 });
        await ensureDurableConsumer(jsm, spec);
        const js = jetstream(spec.nc, { timeout: 5_000 });
        const consumer = await js.consumers.get(spec.stream, spec.durable);
        const messages = await consumer.consume({ max_messages: spec.maxInFlight, expires: 5_000 });
        current = messages;
        if (!running) messages.stop();
        // A deleted or missing consumer (an operator reset it, a server lost it): make it again.
        void (async () => {
          for await (const status of messages.status()) {
            if (status.type === "consumer_deleted" || status.type === "consumer_not_found" || status.type === "stream_not_found") {
              messages.stop();
              break;
            }
          }
        })().catch(() => {});
        for await (const message of messages) {
          while (inFlight.size >= spec.maxInFlight) await new Promise<void>((resolve) => (wake = resolve));
          const work = handle(toDelivery(message, spec.namespace)).catch((error: unknown) => spec.onError?.(error));
          inFlight.add(work);
          void work.finally(() => {
            inFlight.delete(work);
            const w = wake;
            wake = null;
            w?.();
          });
          if (!running) break;
        }
      } catch (error) {
        if (running) spec.onError?.(error);
      } finally {
        current = null;
      }
      if (running) await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1_000);
        stopWait = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  })();

  return {
    async stop() {
      running = false;
      current?.stop();
      stopWait?.();
      wake?.();
      await loop;
      await Promise.all([...inFlight]);
    },
  };
}

export function toDelivery(message: JsMsg, namespace: NatsNamespace): Delivery {
  const headers: Record<string, string> = {};
  if (message.headers) for (const [key, values] of message.headers) headers[key] = values[0] ?? "";
  return {
    subject: namespace.unqualify(message.subject),
    data: message.data,
    headers,
    deliveryCount: message.info.deliveryCount,
    stream: message.info.stream,
    streamSequence: message.info.streamSequence,
    ack: () => message.ack(),
    nak: (delayMs) => message.nak(delayMs),
    term: (reason) => message.term(reason),
    working: () => message.working(),
  };
}
