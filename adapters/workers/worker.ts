import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { randomUUID } from "node:crypto";
import { DEFAULT_NAMESPACE, STREAMS, type NatsNamespace } from "../nats/namespace.ts";
import { ensureStreams } from "../nats/topology.ts";
import { runDurableConsumer } from "./consume.ts";
import {
  CancelMessageSchema,
  HEADERS,
  WorkRequestMessageSchema,
  headerText,
  type Consumption,
  type Delivery,
  type Heartbeat,
  type WorkRequestMessage,
  type WorkResultMessage,
} from "./port.ts";
import { publishDeadLetter } from "./saga-bus.ts";

/**
 * A failure a handler reports on purpose. transient: retrying may help (the
 * saga retries with backoff within the task's attempt budget); permanent:
 * it cannot (bad input, refused), the task fails with `message`.
 * Anything else a handler throws is unexpected: the request is delivered
 * again, and after maxDeliver it is dead-lettered and answered as a
 * permanent failure with the error's text.
 */
export class WorkError extends Error {
  readonly transient: boolean;
  readonly code: string;
  /** What the failure is about when it is a dependency that is down ("bmc <hostId>"): the task shows as blocked on it. */
  readonly dependency: string | undefined;
  constructor(message: string, options: { transient: boolean; code?: string; dependency?: string }) {
    super(message);
    this.name = "WorkError";
    this.transient = options.transient;
    this.code = options.code ?? (options.transient ? "transient_failure" : "permanent_failure");
    this.dependency = options.dependency;
  }
}

export interface WorkContext {
  /** Aborted when the saga cancels this request (the task was cancelled or ended) or the worker stops. */
  readonly signal: AbortSignal;
  /** Reports progress to the task (also tells JetStream the request is still being worked on). */
  progress(percent: number, message?: string): void;
  readonly workerId: string;
  /** How many times this request has been delivered (1 first; more after a crash or a failure). */
  readonly deliveryCount: number;
}

/**
 * Does one action. Must converge: read the real state first and only change
 * what differs, so running it again (after a crash, a redelivery) is safe.
 */
export type WorkHandler = (request: WorkRequestMessage, context: WorkContext) => Promise<Record<string, unknown> | void>;

export interface StartWorkerOptions {
  readonly nc: NatsConnection;
  readonly namespace?: NatsNamespace;
  readonly service: string;
  readonly datacenter: string;
  /**
   * Takes only the work addressed to this one worker within the datacenter
   * (`dv.<service>.cmd.*.<datacenter>.<target>`, its own durable), e.g. the
   * hypervisor worker of one host; absent: work for any worker of the service there.
   */
  readonly target?: string;
  readonly handlers: Readonly<Record<string, WorkHandler>>;
  readonly workerId?: string;
  /** Heartbeat on `dv.<service>.health` (default 2000 ms). */
  readonly heartbeatIntervalMs?: number;
  /** Requests handled at once (default 8). */
  readonly concurrency?: number;
  /** Redelivered when not acked within this time (default 30 000 ms; kept alive while a handler runs). */
  readonly ackWaitMs?: number;
  /** Deliveries of a request whose handler keeps throwing before it is dead-lettered (default 5). */
  readonly maxDeliver?: number;
  /** Creates/updates the streams first (default true). */
  readonly ensureStreams?: boolean;
  readonly onError?: (error: unknown, context: string) => void;
}

export interface RunningWorker {
  readonly workerId: string;
  readonly service: string;
  readonly datacenter: string;
  /** Stops taking work, aborts what runs, stops heartbeats. */
  stop(): Promise<void>;
}

/** The durable consumer name of a service's workers in a datacenter, or of its one target there (unqualified). */
export function workerDurable(service: string, datacenter: string, target?: string): string {
  return `WORKERS_${service}_${datacenter}${target ? `_${target}` : ""}`.replace(/[^A-Za-z0-9_-]/g, "_");
}

/**
 * Runs a worker: pulls `dv.<service>.cmd.*.<datacenter>` from DV_WORK (one
 * durable shared by every worker of the service in the datacenter; with a
 * `target`, `…<datacenter>.<target>` and a durable of its own), runs the
 * action's handler with an AbortSignal wired to `dv.<service>.cancel.<req>`,
 * publishes the result to DV_RESULTS `dv.<service>.res.<action>.<datacenter>`
 * (Nats-Msg-Id `<requestId>:result`), and acks only after the result is
 * stored. Heartbeats go to `dv.<service>.health`.
 */
export async function startWorker(options: StartWorkerOptions): Promise<RunningWorker> {
  const ns = options.namespace ?? DEFAULT_NAMESPACE;
  const { nc, service, datacenter, target } = options;
  const workerId = options.workerId ?? `${service}-${datacenter}${target ? `-${target}` : ""}-${randomUUID().slice(0, 8)}`;
  const report = (error: unknown, context: string) => options.onError?.(error, context);
  const js = jetstream(nc, { timeout: 5_000 });
  if (options.ensureStreams !== false) await ensureStreams(await jetstreamManager(nc), { namespace: ns });

  const running = new Map<string, AbortController>();
  const cancelSub = nc.subscribe(ns.subject(service, "cancel", ">"), {
    callback: (error, message) => {
      if (error) return;
      const parsed = CancelMessageSchema.safeParse((() => { try { return message.json(); } catch { return null; } })());
      if (parsed.success) running.get(parsed.data.requestId)?.abort(new Error(parsed.data.reason || "cancelled"));
    },
  });

  const beat = () => {
    const heartbeat: Heartbeat = { service, datacenter, ...(target ? { target } : {}), workerId, at: new Date().toISOString() };
    try {
      nc.publish(ns.subject(service, "health"), JSON.stringify(heartbeat));
    } catch (error) {
      report(error, "heartbeat");
    }
  };
  beat();
  const heartbeats = setInterval(beat, options.heartbeatIntervalMs ?? 2_000);

  const publishResult = async (result: WorkResultMessage, msgId: string | undefined) => {
    const h = natsHeaders();
    h.set(HEADERS.requestId, result.requestId);
    await js.publish(ns.subject(service, "res", result.action, datacenter), JSON.stringify(result), { ...(msgId ? { msgID: msgId } : {}), headers: h });
  };
  const base = (request: Pick<WorkRequestMessage, "requestId" | "taskId" | "step" | "action">) => ({
    requestId: request.requestId,
    taskId: request.taskId,
    step: request.step,
    service,
    action: request.action,
    datacenter,
    workerId,
    at: new Date().toISOString(),
  });
  const maxDeliver = options.maxDeliver ?? 5;
  const ackWaitMs = options.ackWaitMs ?? 30_000;

  let stopping = false;
  /** Cancelled by the saga: nobody waits for an answer. Stopped with the worker: another worker does it again. */
  const settleAborted = (delivery: Delivery) => (stopping ? delivery.nak() : delivery.ack());

  const handle = async (delivery: Delivery): Promise<void> => {
    if (stopping) {
      delivery.nak();
      return;
    }
    let request: WorkRequestMessage;
    try {
      request = WorkRequestMessageSchema.parse(JSON.parse(new TextDecoder().decode(delivery.data)));
    } catch (error) {
      // Cannot be processed, ever: dead-letter it; answer it if it names enough to be answered.
      const text = `malformed work request: ${error instanceof Error ? error.message : String(error)}`;
      await deadLetter(delivery, text, partialRequest(delivery));
      return;
    }
    const handler = options.handlers[request.action];
    if (!handler) {
      await deadLetter(delivery, `${service} workers have no handler for action ${request.action}`, request);
      return;
    }
    const controller = new AbortController();
    running.set(request.requestId, controller);
    const keepAlive = setInterval(() => delivery.working(), Math.max(500, Math.floor(ackWaitMs / 3)));
    try {
      const output = await handler(request, {
        signal: controller.signal,
        workerId,
        deliveryCount: delivery.deliveryCount,
        progress: (percent, message = "") => {
          delivery.working();
          void publishResult({ kind: "progress", ...base(request), percent: Math.max(0, Math.min(100, Math.round(percent))), message }, undefined).catch((e) =>
            report(e, "progress"),
          );
        },
      });
      if (controller.signal.aborted) {
        settleAborted(delivery);
        return;
      }
      await publishResult({ kind: "succeeded", ...base(request), output: output ?? {} }, `${request.requestId}:result`);
      delivery.ack();
    } catch (error) {
      if (controller.signal.aborted) {
        settleAborted(delivery);
        return;
      }
      if (error instanceof WorkError) {
        await publishResult(
          {
            kind: "failed",
            ...base(request),
            transient: error.transient,
            code: error.code,
            message: error.message || error.code,
            ...(error.dependency ? { dependency: error.dependency.slice(0, 200) } : {}),
          },
          `${request.requestId}:result`,
        );
        delivery.ack();
        return;
      }
      const text = error instanceof Error ? error.message || error.name : String(error);
      if (delivery.deliveryCount < maxDeliver) {
        report(error, `${request.requestId} (delivery ${delivery.deliveryCount} of ${maxDeliver})`);
        delivery.nak(Math.min(5_000, 200 * 2 ** (delivery.deliveryCount - 1)));
        return;
      }
      await deadLetter(delivery, text, request);
    } finally {
      clearInterval(keepAlive);
      running.delete(request.requestId);
    }
  };

  /** DV_DLQ plus a permanent failure result, then term; if NATS refuses either, try again later. */
  const deadLetter = async (delivery: Delivery, text: string, request: Pick<WorkRequestMessage, "requestId" | "taskId" | "step" | "action"> | null) => {
    try {
      await publishDeadLetter(js, ns, delivery, text);
      if (request) {
        await publishResult({ kind: "failed", ...base(request), transient: false, code: "poison_message", message: text.slice(0, 4000) || "poison message" }, `${request.requestId}:result`);
      }
      delivery.term(headerText(text, 200));
    } catch (error) {
      report(error, "dead letter");
      delivery.nak(1_000);
    }
  };

  const consumption: Consumption = runDurableConsumer(
    {
      nc,
      namespace: ns,
      stream: ns.stream(STREAMS.work),
      durable: ns.stream(workerDurable(service, datacenter, target)),
      filterSubject: ns.subject(service, "cmd", "*", datacenter, ...(target ? [target] : [])),
      maxInFlight: options.concurrency ?? 8,
      ackWaitMs,
      onError: (error) => report(error, "work consumer"),
    },
    handle,
  );

  return {
    workerId,
    service,
    datacenter,
    async stop() {
      stopping = true;
      clearInterval(heartbeats);
      for (const controller of running.values()) controller.abort(new Error("worker stopping"));
      await consumption.stop();
      cancelSub.unsubscribe();
    },
  };
}

function partialRequest(delivery: Delivery): Pick<WorkRequestMessage, "requestId" | "taskId" | "step" | "action"> | null {
  try {
    const body = JSON.parse(new TextDecoder().decode(delivery.data)) as Record<string, unknown>;
    const [requestId, taskId, step, action] = [body.requestId, body.taskId, body.step, body.action];
    if ([requestId, taskId, step, action].every((v) => typeof v === "string" && v.length > 0)) {
      return { requestId, taskId, step, action } as Pick<WorkRequestMessage, "requestId" | "taskId" | "step" | "action">;
    }
  } catch {
    // not JSON
  }
  return null;
}
