import { z } from "zod";

/**
 * The port between the saga runtime (sagas/) and the messaging that carries
 * work to workers and results back (sagas/README.md). sagas/ depends on this
 * file only; adapters/workers/saga-bus.ts implements it over NATS JetStream.
 * Subjects here are unqualified (`dv.…`); the implementation puts them in its
 * namespace.
 */

const Json = z.record(z.string(), z.unknown());

/** Body of `dv.<service>.cmd.<action>.<datacenter>` (Nats-Msg-Id = requestId). */
export const WorkRequestMessageSchema = z.object({
  requestId: z.string().min(1),
  taskId: z.string().min(1),
  step: z.string().min(1),
  attempt: z.number().int().min(1),
  service: z.string().min(1),
  action: z.string().min(1),
  datacenter: z.string().min(1),
  /** One worker within the datacenter (a hypervisor host): the request's subject ends `.<datacenter>.<target>`. */
  target: z.string().min(1).optional(),
  payload: Json,
  correlationId: z.string().min(1),
  requestedAt: z.string().min(1),
});
export type WorkRequestMessage = z.infer<typeof WorkRequestMessageSchema>;

const ResultBase = {
  requestId: z.string().min(1),
  taskId: z.string().min(1),
  step: z.string().min(1),
  service: z.string().min(1),
  action: z.string().min(1),
  datacenter: z.string().min(1),
  workerId: z.string().min(1),
  at: z.string().min(1),
};

/** Body of `dv.<service>.res.<action>.<datacenter>` (Nats-Msg-Id = `<requestId>:result`; progress has none). */
export const WorkResultMessageSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("succeeded"), ...ResultBase, output: Json }),
  z.object({
    kind: z.literal("failed"),
    ...ResultBase,
    /** False: retrying cannot help; the task fails with `message`. */
    transient: z.boolean(),
    code: z.string().min(1),
    message: z.string().min(1),
    /**
     * The dependency the failure is about, e.g. "bmc <hostId>" for an
     * unreachable BMC: the saga blocks the task on it (hard) while it
     * retries, and unblocks it when a later attempt gets past it.
     */
    dependency: z.string().min(1).max(200).optional(),
  }),
  z.object({ kind: z.literal("progress"), ...ResultBase, percent: z.number().int().min(0).max(100), message: z.string() }),
]);
export type WorkResultMessage = z.infer<typeof WorkResultMessageSchema>;

/** Body of core NATS `dv.<service>.health`. */
export const HeartbeatSchema = z.object({
  service: z.string().min(1),
  datacenter: z.string().min(1),
  target: z.string().min(1).optional(),
  workerId: z.string().min(1),
  at: z.string().min(1),
});
export type Heartbeat = z.infer<typeof HeartbeatSchema>;

/** Body of core NATS `dv.<service>.cancel.<request token>`. */
export const CancelMessageSchema = z.object({ requestId: z.string().min(1), reason: z.string() });
export type CancelMessage = z.infer<typeof CancelMessageSchema>;

/** Headers the topology defines (sagas/README.md). */
export const HEADERS = {
  eventType: "Dv-Event-Type",
  streamId: "Dv-Stream-Id",
  position: "Dv-Position",
  requestId: "Dv-Request-Id",
  correlationId: "Dv-Correlation-Id",
  /** Dead letters: where the message came from, and why it died. */
  originalSubject: "Dv-Original-Subject",
  originalStream: "Dv-Original-Stream",
  streamSequence: "Dv-Stream-Sequence",
  deliveryCount: "Dv-Delivery-Count",
  error: "Dv-Error",
} as const;

/** One message of a durable, explicitly acknowledged consumer. Settle it exactly once. */
export interface Delivery {
  /** Unqualified subject (`dv.task.evt.step_started`). */
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  readonly stream: string;
  readonly streamSequence: number;
  ack(): void;
  /** Deliver again after delayMs. */
  nak(delayMs?: number): void;
  /** Never deliver again. */
  term(reason?: string): void;
  /** Still working: restart the ack timer. */
  working(): void;
}

export interface ConsumeOptions {
  /** Durable consumer name (unqualified; the namespace is applied). */
  readonly durable: string;
  /** Messages handled at once (and pulled ahead). */
  readonly maxInFlight: number;
  /** Redelivered when not acked within this time. */
  readonly ackWaitMs: number;
}

export interface Consumption {
  /** Stops pulling and waits for the messages being handled. */
  stop(): Promise<void>;
}

/** What the saga runtime needs from the messaging layer. */
export interface SagaBus {
  /** Task events (`dv.task.evt.>` in DV_EVENTS), handled at most maxInFlight at a time. */
  consumeTaskEvents(options: ConsumeOptions, handle: (delivery: Delivery) => Promise<void>): Consumption;
  /**
   * Events of one type from the log (DV_EVENTS, the subject the relay gives
   * `eventType` in streams starting with `streamPrefix`): saga triggers.
   */
  consumeEvents(options: ConsumeOptions & { readonly eventType: string; readonly streamPrefix: string }, handle: (delivery: Delivery) => Promise<void>): Consumption;
  /** Worker results (`dv.*.res.>` in DV_RESULTS). */
  consumeResults(options: ConsumeOptions, handle: (delivery: Delivery) => Promise<void>): Consumption;
  /** To DV_WORK on `dv.<service>.cmd.<action>.<datacenter>`, Nats-Msg-Id = requestId; resolves once stored (or dropped as a copy). */
  publishWork(request: WorkRequestMessage): Promise<void>;
  /** Core NATS `dv.<service>.cancel.<request>`: a worker running it aborts it. */
  publishCancel(service: string, message: CancelMessage): Promise<void>;
  /** Core NATS `dv.*.health`; returns the unsubscribe. */
  onHeartbeat(listener: (heartbeat: Heartbeat) => void): () => void;
  /** To DV_DLQ on `dv.dlq.msg.<original subject>` with the origin headers; deduplicated per stream sequence. */
  deadLetter(delivery: Delivery, error: string): Promise<void>;
}

/** NATS header values are one line. */
export function headerText(text: string, max = 2000): string {
  const line = text.replace(/[\r\n]+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** A request id as one subject token (task ids may hold '.'); the message body carries the real id. */
export function requestToken(requestId: string): string {
  return requestId.replace(/[.*>\s]/g, "_");
}
