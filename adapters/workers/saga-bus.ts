import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_NAMESPACE, STREAMS, type NatsNamespace } from "../nats/namespace.ts";
import { subjectForEvent } from "../nats/subjects.ts";
import { dlqSubject } from "../nats/topology.ts";
import { runDurableConsumer } from "./consume.ts";
import { HEADERS, headerText, requestToken, type CancelMessage, type Delivery, type Heartbeat, type SagaBus, type WorkRequestMessage } from "./port.ts";

export interface JetStreamSagaBusOptions {
  readonly nc: NatsConnection;
  readonly namespace?: NatsNamespace;
  /** How long a publish may wait for JetStream's ack (default 5000 ms). */
  readonly publishTimeoutMs?: number;
  readonly onError?: (error: unknown, context: string) => void;
}

/** The saga runtime's messaging (adapters/workers/port.ts SagaBus) over NATS JetStream, in the topology of sagas/README.md. */
export class JetStreamSagaBus implements SagaBus {
  private readonly ns: NatsNamespace;
  private readonly js: JetStreamClient;

  constructor(private readonly options: JetStreamSagaBusOptions) {
    this.ns = options.namespace ?? DEFAULT_NAMESPACE;
    this.js = jetstream(options.nc, { timeout: options.publishTimeoutMs ?? 5_000 });
  }

  consumeTaskEvents(options: Parameters<SagaBus["consumeTaskEvents"]>[0], handle: (delivery: Delivery) => Promise<void>) {
    return runDurableConsumer(
      {
        nc: this.options.nc,
        namespace: this.ns,
        stream: this.ns.stream(STREAMS.events),
        durable: this.ns.stream(options.durable),
        filterSubject: this.ns.subject("task", "evt", ">"),
        maxInFlight: options.maxInFlight,
        ackWaitMs: options.ackWaitMs,
        onError: (error) => this.options.onError?.(error, "task event consumer"),
      },
      handle,
    );
  }

  consumeEvents(options: Parameters<SagaBus["consumeEvents"]>[0], handle: (delivery: Delivery) => Promise<void>) {
    const subject = subjectForEvent({ type: options.eventType, streamId: `${options.streamPrefix}x` });
    return runDurableConsumer(
      {
        nc: this.options.nc,
        namespace: this.ns,
        stream: this.ns.stream(STREAMS.events),
        durable: this.ns.stream(options.durable),
        filterSubject: this.ns.qualify(subject),
        maxInFlight: options.maxInFlight,
        ackWaitMs: options.ackWaitMs,
        onError: (error) => this.options.onError?.(error, `${options.eventType} consumer`),
      },
      handle,
    );
  }

  consumeResults(options: Parameters<SagaBus["consumeResults"]>[0], handle: (delivery: Delivery) => Promise<void>) {
    return runDurableConsumer(
      {
        nc: this.options.nc,
        namespace: this.ns,
        stream: this.ns.stream(STREAMS.results),
        durable: this.ns.stream(options.durable),
        filterSubject: this.ns.subject("*", "res", ">"),
        maxInFlight: options.maxInFlight,
        ackWaitMs: options.ackWaitMs,
        onError: (error) => this.options.onError?.(error, "result consumer"),
      },
      handle,
    );
  }

  async publishWork(request: WorkRequestMessage): Promise<void> {
    const h = natsHeaders();
    h.set(HEADERS.requestId, request.requestId);
    h.set(HEADERS.correlationId, headerText(request.correlationId));
    await this.js.publish(this.ns.subject(request.service, "cmd", request.action, request.datacenter, ...(request.target ? [request.target] : [])), JSON.stringify(request), {
      msgID: request.requestId,
      headers: h,
    });
  }

  async publishCancel(service: string, message: CancelMessage): Promise<void> {
    this.options.nc.publish(this.ns.subject(service, "cancel", requestToken(message.requestId)), JSON.stringify(message));
  }

  onHeartbeat(listener: (heartbeat: Heartbeat) => void): () => void {
    const subscription = this.options.nc.subscribe(this.ns.subject("*", "health"), {
      callback: (error, message) => {
        if (error) return;
        try {
          listener(message.json<Heartbeat>());
        } catch {
          // not a heartbeat; ignore
        }
      },
    });
    return () => subscription.unsubscribe();
  }

  deadLetter(delivery: Delivery, error: string): Promise<void> {
    return publishDeadLetter(this.js, this.ns, delivery, error);
  }
}

/** DV_DLQ on `dv.dlq.msg.<original subject without dv.>`, with where it came from and why it died. */
export async function publishDeadLetter(js: JetStreamClient, ns: NatsNamespace, delivery: Delivery, error: string): Promise<void> {
  const h = natsHeaders();
  for (const [key, value] of Object.entries(delivery.headers)) if (!/^nats-/i.test(key)) h.set(key, value);
  h.set(HEADERS.originalSubject, delivery.subject);
  h.set(HEADERS.originalStream, delivery.stream);
  h.set(HEADERS.streamSequence, String(delivery.streamSequence));
  h.set(HEADERS.deliveryCount, String(delivery.deliveryCount));
  h.set(HEADERS.error, headerText(error) || "unknown error");
  const tokens = delivery.subject.split(".").slice(1);
  await js.publish(dlqSubject(ns, ...tokens), delivery.data, { msgID: `dlq:${delivery.stream}:${delivery.streamSequence}`, headers: h });
}
