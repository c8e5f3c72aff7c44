import { JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { DeadLettersUnavailableError, type DeadLetter, type DeadLetterReplay, type DeadLetters, type ReplayOutcome } from "../dlq/port.ts";
import { HEADERS } from "../workers/port.ts";
import type { NatsLink } from "./connection.ts";
import { DEFAULT_NAMESPACE, STREAMS, type NatsNamespace } from "./namespace.ts";
import { EVENT_HEADERS } from "./relay.ts";

/** KV bucket (namespaced like a stream) recording which dead letters were replayed, keyed by DLQ sequence. */
export const DLQ_REPLAYS_BUCKET = "DV_DLQ_REPLAYS";
/** Header of a replayed message: the DLQ sequence it was replayed from. */
export const REPLAY_OF_HEADER = "Dv-Replay-Of";

/** Headers a replay does not carry: NATS's own, the dead-letter bookkeeping, and Dv-Position (the relay reads it from DV_EVENTS' newest message). */
const NOT_REPLAYED = new Set(
  [HEADERS.originalSubject, HEADERS.originalStream, HEADERS.streamSequence, HEADERS.deliveryCount, HEADERS.error, EVENT_HEADERS.position, REPLAY_OF_HEADER].map((h) =>
    h.toLowerCase(),
  ),
);

export interface NatsDeadLettersOptions {
  /** The connection (dv up's NatsLink); while it is down every call throws DeadLettersUnavailableError. */
  readonly nats: Pick<NatsLink, "connection" | "connected">;
  readonly namespace?: NatsNamespace;
  /** How long a JetStream request may take (default 5000 ms). */
  readonly timeoutMs?: number;
}

type ReplayRecord =
  | { readonly state: "publishing"; readonly at: string; readonly messageId: string }
  | { readonly state: "published"; readonly replayedAt: string; readonly messageId: string; readonly stream: string; readonly sequence: number };

/**
 * DV_DLQ over JetStream (adapters/dlq/port.ts). Dead letters are read with
 * STREAM.MSG.GET by sequence (DV_DLQ is a limits stream; nothing here
 * consumes or deletes them). A replay publishes the message again to its
 * original subject and stream with Nats-Msg-Id
 * `<original stream>:<original sequence>:replay:<DLQ sequence>` and records
 * it in the KV bucket DV_DLQ_REPLAYS under the DLQ sequence; the dead letter
 * stays (the record of what died and why), marked replayed.
 *
 * Once per DLQ sequence: a recorded replay is never published again; two
 * replays at once, or one after a crash between publish and record, publish
 * the same Nats-Msg-Id, which JetStream drops as a copy within the original
 * stream's duplicate window (10 min).
 */
export class NatsDeadLetters implements DeadLetters {
  private readonly ns: NatsNamespace;
  private readonly stream: string;
  private readonly timeoutMs: number;
  private clients: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager; kv: Promise<KV> | null } | null = null;

  constructor(private readonly options: NatsDeadLettersOptions) {
    this.ns = options.namespace ?? DEFAULT_NAMESPACE;
    this.stream = this.ns.stream(STREAMS.dlq);
    this.timeoutMs = options.timeoutMs ?? 5_000;
  }

  async list(options: { readonly after?: number; readonly limit: number }): Promise<DeadLetter[]> {
    return this.guard(async () => {
      const { jsm } = await this.connect();
      const info = await jsm.streams.info(this.stream).catch((error: unknown) => {
        if (isCode(error, JetStreamApiCodes.StreamNotFound)) return null;
        throw error;
      });
      if (!info || info.state.messages === 0) return [];
      const found: DeadLetter[] = [];
      for (let seq = Math.max(info.state.first_seq, (options.after ?? 0) + 1); seq <= info.state.last_seq && found.length < options.limit; seq++) {
        const letter = await this.read(seq);
        if (letter) found.push(letter);
      }
      return found;
    });
  }

  get(sequence: number): Promise<DeadLetter | null> {
    return this.guard(() => this.read(sequence));
  }

  replay(sequence: number): Promise<ReplayOutcome | null> {
    return this.guard(async () => {
      const letter = await this.read(sequence);
      if (!letter) return null;
      if (letter.replay) return { deadLetter: letter, replay: letter.replay, published: false };
      const kv = await this.bucket();
      const key = String(sequence);
      const messageId = `${letter.originalStream}:${letter.originalSequence ?? "?"}:replay:${sequence}`;
      // Claim it; whoever finds a claim (a concurrent replay, or one that crashed) publishes the same Nats-Msg-Id.
      await kv.create(key, JSON.stringify({ state: "publishing", at: new Date().toISOString(), messageId } satisfies ReplayRecord)).catch(async (error: unknown) => {
        const current = parseRecord((await kv.get(key))?.string());
        if (!current) throw error;
      });
      const { js } = await this.connect();
      const h = natsHeaders();
      for (const [name, value] of Object.entries(letter.headers)) {
        if (/^nats-/i.test(name) || NOT_REPLAYED.has(name.toLowerCase())) continue;
        h.set(name, value);
      }
      h.set(REPLAY_OF_HEADER, key);
      const ack = await js.publish(this.ns.qualify(letter.originalSubject), letter.data, {
        msgID: messageId,
        headers: h,
        ...(letter.originalStream ? { expect: { streamName: letter.originalStream } } : {}),
      });
      const record: ReplayRecord = { state: "published", replayedAt: new Date().toISOString(), messageId, stream: ack.stream, sequence: ack.seq };
      const entry = await kv.get(key);
      const current = parseRecord(entry?.string());
      if (current?.state === "published") {
        // A concurrent replay recorded it first (the same message: JetStream dropped one copy).
        return { deadLetter: letter, replay: toReplay(current)!, published: false };
      }
      await kv.put(key, JSON.stringify(record));
      return { deadLetter: { ...letter, replay: toReplay(record) }, replay: toReplay(record)!, published: !ack.duplicate };
    });
  }

  private async read(sequence: number): Promise<DeadLetter | null> {
    if (!Number.isSafeInteger(sequence) || sequence < 1) return null;
    const { jsm } = await this.connect();
    const message = await jsm.streams.getMessage(this.stream, { seq: sequence }).catch((error: unknown) => {
      if (isCode(error, JetStreamApiCodes.NoMessageFound) || isCode(error, JetStreamApiCodes.StreamNotFound)) return null;
      throw error;
    });
    if (!message) return null;
    const record = parseRecord((await (await this.bucket()).get(String(sequence)))?.string());
    return toDeadLetter(message, toReplay(record));
  }

  private async connect() {
    const nc = this.options.nats.connection;
    if (!nc || !this.options.nats.connected || nc.isClosed()) throw new DeadLettersUnavailableError("NATS is not connected");
    if (this.clients?.nc !== nc) {
      this.clients = { nc, js: jetstream(nc, { timeout: this.timeoutMs }), jsm: await jetstreamManager(nc, { timeout: this.timeoutMs }), kv: null };
    }
    return this.clients;
  }

  private async bucket(): Promise<KV> {
    const clients = await this.connect();
    if (!clients.kv) {
      const name = this.ns.stream(DLQ_REPLAYS_BUCKET);
      clients.kv = new Kvm(clients.js).create(name, { history: 1, description: "Dataverket: dead letters replayed, by DV_DLQ sequence" });
      clients.kv.catch(() => {
        if (this.clients === clients) clients.kv = null;
      });
    }
    return clients.kv;
  }

  /** NATS gone mid-call reads as unavailable, not as a server error. */
  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof DeadLettersUnavailableError) throw error;
      if (!this.options.nats.connected) throw new DeadLettersUnavailableError(`NATS is not connected (${(error as Error).message})`);
      const name = (error as Error)?.name ?? "";
      if (/Timeout|NoResponders|ConnectionClosed|RequestError/i.test(name)) throw new DeadLettersUnavailableError(`JetStream did not answer: ${(error as Error).message}`);
      throw error;
    }
  }
}

function isCode(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}

function parseRecord(text: string | undefined): ReplayRecord | null {
  if (!text) return null;
  try {
    const value = JSON.parse(text) as ReplayRecord;
    return value.state === "publishing" || value.state === "published" ? value : null;
  } catch {
    return null;
  }
}

function toReplay(record: ReplayRecord | null): DeadLetterReplay | null {
  if (record?.state !== "published") return null;
  return { replayedAt: new Date(record.replayedAt), messageId: record.messageId, stream: record.stream, sequence: record.sequence };
}

function toDeadLetter(message: StoredMsg, replay: DeadLetterReplay | null): DeadLetter {
  const headers: Record<string, string> = {};
  if (message.header) for (const [key, values] of message.header) headers[key] = values[0] ?? "";
  const body = jsonObject(message.data);
  const text = (value: unknown) => (typeof value === "string" && value.length > 0 ? value : null);
  const int = (value: string | undefined) => (value !== undefined && /^\d+$/.test(value) ? Number(value) : null);
  const requestId = text(headers[HEADERS.requestId]) ?? text(body?.requestId);
  const streamId = text(headers[HEADERS.streamId]) ?? text(body?.streamId);
  const taskId =
    text(body?.taskId) ??
    (streamId?.startsWith("task-") ? streamId.slice("task-".length) : null) ??
    (requestId && requestId.split(":").length >= 3 ? requestId.split(":").slice(0, -2).join(":") : null);
  return {
    sequence: message.seq,
    originalSubject: headers[HEADERS.originalSubject] ?? "",
    originalStream: headers[HEADERS.originalStream] ?? "",
    originalSequence: int(headers[HEADERS.streamSequence]),
    deliveryCount: int(headers[HEADERS.deliveryCount]),
    error: headers[HEADERS.error] ?? "",
    taskId,
    requestId,
    eventType: text(headers[HEADERS.eventType]) ?? text(body?.type),
    correlationId: text(headers[HEADERS.correlationId]) ?? text(body?.correlationId),
    deadLetteredAt: message.time,
    replay,
    headers,
    data: message.data,
  };
}

function jsonObject(data: Uint8Array): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(data));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
