import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, PubHeaders, type JetStreamClient } from "@nats-io/jetstream";
import { setTimeout as wait } from "node:timers/promises";
import { Wake } from "../eventstore/wake.ts";
import { headers, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import type pg from "pg";
import type { EventStore, EventSubscription, LogPosition, RecordedEvent } from "../eventstore/port.ts";
import { START } from "../eventstore/port.ts";
import { comparePositions, formatPosition, parsePosition } from "../eventstore/position.ts";
import type { NatsLink } from "./connection.ts";
import { DEFAULT_NAMESPACE, STREAMS, type NatsNamespace } from "./namespace.ts";
import { subjectForEvent } from "./subjects.ts";
import { ensureStreams, type EnsureStreamsOptions } from "./topology.ts";

/** How many messages back from the stream's end a re-sync looks for the newest relayed one. */
const SYNC_SCAN_LIMIT = 100;

/** Headers on every relayed event (sagas/README.md). Nats-Msg-Id is set through the publish option msgID. */
export const EVENT_HEADERS = {
  type: "Dv-Event-Type",
  streamId: "Dv-Stream-Id",
  position: "Dv-Position",
  correlationId: "Dv-Correlation-Id",
} as const;

/** The JSON body of a relayed event: the recorded envelope, with the log position as `"<xid>.<gp>"`. */
export interface RelayedEvent {
  readonly id: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly streamId: string;
  readonly streamPosition: number;
  readonly position: string;
  readonly occurredAt: string;
  readonly correlationId: string;
  readonly causationId: string | null;
  readonly actor: RecordedEvent["actor"];
  readonly scope: RecordedEvent["scope"];
  readonly datacenter: string | null;
  readonly data: unknown;
}

export function relayedEvent(event: RecordedEvent): RelayedEvent {
  return {
    id: event.id,
    type: event.type,
    schemaVersion: event.schemaVersion,
    streamId: event.streamId,
    streamPosition: event.streamPosition,
    position: formatPosition(event),
    occurredAt: event.occurredAt.toISOString(),
    correlationId: event.correlationId,
    causationId: event.causationId,
    actor: event.actor,
    scope: event.scope,
    datacenter: event.datacenter,
    data: event.data,
  };
}

/**
 * - connecting: no NATS connection yet (the first connect is still being retried)
 * - catching_up: publishing full batches, behind the head
 * - live: at the head, waiting for new events
 * - retrying: the last batch failed (NATS down, stream missing, ...); backing off
 * - stopped
 */
export type RelayState = "connecting" | "catching_up" | "live" | "retrying" | "stopped";

export interface RelayStatus {
  readonly name: string;
  readonly state: RelayState;
  /** Everything up to here is in DV_EVENTS, `"<transactionId>.<globalPosition>"`. */
  readonly position: string;
  /** The log's readable head. */
  readonly headPosition: string;
  /** Events after `position` (counted up to lagProbeLimit; see lagEventsExact). */
  readonly lagEvents: number;
  readonly lagEventsExact: boolean;
  readonly connected: boolean;
  readonly lastError: string | null;
  readonly lastErrorAt: Date | null;
  /** Events this instance published and JetStream stored (duplicates not counted). */
  readonly publishedTotal: number;
}

export interface RelayOptions {
  readonly store: EventStore;
  /** For relay.checkpoints; the caller owns it. */
  readonly pool: pg.Pool;
  readonly nats: NatsLink;
  readonly namespace?: NatsNamespace;
  /** Checkpoint row (default "jetstream", or "jetstream:<prefix>" in a namespace: each namespace's stream gets the whole log). */
  readonly name?: string;
  /** Events read and published per batch (default 1000). */
  readonly batchSize?: number;
  /** Re-read even without a wake-up from the store (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** How long one batch may wait for its acks (default 10 000 ms). */
  readonly publishTimeoutMs?: number;
  /** Backoff after a failed batch: doubles from initialMs up to maxMs (defaults 250, 15 000). */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** status() counts at most this many unpublished events (default 10 000). */
  readonly lagProbeLimit?: number;
  /** Creates/updates the streams on each new connection (default true, with these options). */
  readonly streams?: boolean | Omit<EnsureStreamsOptions, "namespace">;
  readonly onError?: (error: unknown) => void;
}

/**
 * Copies the event log to JetStream, in log order, each event exactly once.
 *
 * The loop: read up to batchSize events after the position, publish them all
 * at once (pipelined on one connection; one ack per batch, see publish()),
 * read the next batch meanwhile, then write the checkpoint
 * (relay.checkpoints). At the head it sleeps until the store's subscription
 * rings (or the poll interval passes).
 *
 * Order and exactly-once come from JetStream itself, not from timing:
 * - every publish carries `Nats-Msg-Id` = event id (a copy is dropped), and
 * - expectations chain each message to its predecessor (the first of a batch
 *   to the stream's last sequence, the others to the previous event's id;
 *   see publish()). If a connection drops mid-batch, nothing after the first
 *   lost message can be stored (including messages the client buffered and
 *   flushes on reconnect), so the stream is always a gap-free, in-order copy
 *   of the log from where it started.
 * After any failure (and on start) the relay re-syncs from the stream: its
 * last message's `Dv-Position` says where to continue, whatever the
 * Postgres checkpoint says (a crash between acks and checkpoint costs no
 * republish; a stream that lost its tail gets it again). An empty stream
 * continues from the checkpoint.
 *
 * With NATS down the loop waits for the connection and retries with backoff;
 * commands are unaffected (they only touch Postgres). One relay per stream:
 * a second one would not corrupt the order (expectations refuse it) but
 * would fight the first with errors.
 */
export class Relay {
  readonly name: string;
  private readonly options: RelayOptions;
  private readonly namespace: NatsNamespace;
  private readonly streamName: string;
  private readonly wake = new Wake();
  private running = false;
  private stopController = new AbortController();
  private loop: Promise<void> | null = null;
  private feed: Promise<void> | null = null;
  private subscription: EventSubscription | null = null;
  private state: RelayState = "stopped";
  private position: LogPosition | null = null;
  private lastError: string | null = null;
  private lastErrorAt: Date | null = null;
  private failures = 0;
  private published = 0;
  private ensuredFor: NatsConnection | null = null;

  constructor(options: RelayOptions) {
    this.options = options;
    this.namespace = options.namespace ?? DEFAULT_NAMESPACE;
    this.name = options.name ?? (this.namespace.prefix ? `jetstream:${this.namespace.prefix}` : "jetstream");
    this.streamName = this.namespace.stream(STREAMS.events);
  }

  /** Events published (and stored, not duplicates) by this instance since it was made. */
  get publishedTotal(): number {
    return this.published;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopController = new AbortController();
    this.state = "connecting";
    this.feed = this.runWakeFeed();
    this.loop = this.run();
  }

  /** Lets the batch in flight finish (or fail), then stops. Does not close the NATS link or the pool. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopController.abort();
    this.wake.bump();
    await this.subscription?.stop().catch(() => {});
    await this.loop?.catch(() => {});
    await this.feed?.catch(() => {});
    this.loop = null;
    this.feed = null;
    this.state = "stopped";
  }

  async status(): Promise<RelayStatus> {
    const position = this.position ?? (await this.readCheckpoint()) ?? START;
    const head = await this.options.store.headPosition();
    const probeLimit = this.options.lagProbeLimit ?? 10_000;
    let lagEvents = 0;
    let lagEventsExact = true;
    if (comparePositions(position, head) < 0) {
      const pending = await this.options.store.readAll({ after: position, limit: probeLimit });
      lagEvents = pending.length;
      lagEventsExact = pending.length < probeLimit;
    }
    return {
      name: this.name,
      state: this.state,
      position: formatPosition(position),
      headPosition: formatPosition(head),
      lagEvents,
      lagEventsExact,
      connected: this.options.nats.connected,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt,
      publishedTotal: this.published,
    };
  }

  // --- the loop ---------------------------------------------------------------------------

  private async run(): Promise<void> {
    const batchSize = this.options.batchSize ?? 1000;
    /** The stream's last sequence, as the next publish expects it; null = re-sync first. */
    let streamSeq: number | null = null;
    /** The next batch, read while the previous one's ack was awaited. */
    let prefetched: { after: LogPosition; read: Promise<RecordedEvent[]> } | null = null;
    let js = null as { nc: NatsConnection; client: JetStreamClient } | null;
    while (this.running) {
      try {
        const nc = await this.connection();
        if (!nc) break;
        if (js?.nc !== nc) js = { nc, client: jetstream(nc, { timeout: this.options.publishTimeoutMs ?? 10_000 }) };
        if (streamSeq === null) {
          streamSeq = await this.sync(nc);
          prefetched = null;
        }

        const seen = this.wake.generation;
        const position: LogPosition = this.position ?? START;
        const events =
          prefetched && comparePositions(prefetched.after, position) === 0
            ? await prefetched.read
            : await this.options.store.readAll({ after: position, limit: batchSize });
        prefetched = null;
        if (events.length === 0) {
          this.recovered();
          this.state = "live";
          await this.wake.wait(seen, this.options.pollIntervalMs ?? 1000);
          continue;
        }
        const last = events[events.length - 1]!;
        const lastPosition: LogPosition = { transactionId: last.transactionId, globalPosition: last.globalPosition };
        const acked = this.publish(nc, js.client, events, streamSeq);
        if (events.length === batchSize) {
          // Full batch: more is likely waiting; read it while JetStream stores this one.
          const read = this.options.store.readAll({ after: lastPosition, limit: batchSize });
          read.catch(() => {}); // an unused or failed prefetch is re-read
          prefetched = { after: lastPosition, read };
        }
        const newSeq = await acked;
        if (newSeq === null) {
          // The batch's last event was already in the stream: ask the stream where it stands.
          streamSeq = null;
          continue;
        }
        const stored = newSeq - streamSeq;
        streamSeq = newSeq;
        this.published += stored;
        await this.writeCheckpoint(last, stored);
        this.position = lastPosition;
        this.recovered();
        this.state = events.length < batchSize ? "live" : "catching_up";
      } catch (error) {
        if (!this.running) break;
        streamSeq = null; // whatever got stored, the stream says where to go on
        prefetched = null;
        this.noteError(error);
        this.state = "retrying";
        const retry = this.options.retry ?? {};
        const delay = Math.min((retry.initialMs ?? 250) * 2 ** Math.min(this.failures - 1, 16), retry.maxMs ?? 15_000);
        await this.sleep(delay);
      }
    }
    this.state = "stopped";
  }

  /** Waits for a connected client (or stop). */
  private async connection(): Promise<NatsConnection | null> {
    const link = this.options.nats;
    while (this.running) {
      const nc = link.connection;
      if (nc && link.connected) return nc;
      if (!nc) this.state = "connecting";
      await Promise.race([link.waitForChange(1000), this.sleep(1000)]);
    }
    return null;
  }

  /**
   * Where to continue: the stream's last message's Dv-Position when it has
   * one, else the Postgres checkpoint. Returns the stream's last sequence.
   */
  private async sync(nc: NatsConnection): Promise<number> {
    const jsm = await jetstreamManager(nc, { timeout: this.options.publishTimeoutMs ?? 10_000 });
    if (this.options.streams !== false && this.ensuredFor !== nc) {
      await ensureStreams(jsm, { ...(typeof this.options.streams === "object" ? this.options.streams : {}), namespace: this.namespace });
      this.ensuredFor = nc;
    }
    const info = await jsm.streams.info(this.streamName);
    const lastSeq = info.state.last_seq;
    let position = (await this.readCheckpoint()) ?? START;
    // The newest relayed message (a stranger's message carries no Dv-Position; look a little further back).
    const floor = Math.max(info.state.first_seq, lastSeq - SYNC_SCAN_LIMIT + 1, 1);
    for (let seq = lastSeq; info.state.messages > 0 && seq >= floor; seq--) {
      const message = await jsm.streams.getMessage(this.streamName, { seq }).catch((error: unknown) => {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.NoMessageFound) return null;
        throw error;
      });
      const header = message?.header?.get(EVENT_HEADERS.position);
      if (!message || !header) continue;
      if (await this.isFromThisLog(message.header.get(PubHeaders.MsgIdHdr), message.json<Partial<RelayedEvent>>())) {
        position = parsePosition(header);
      } else {
        // Another log's copy (a restored database, another installation on this NATS): trusting its
        // position could skip events of this log. Go on from this log's own checkpoint.
        this.options.onError?.(
          new Error(`${this.streamName}'s newest event (${header}) is not in this event log; continuing from the relay checkpoint ${formatPosition(position)}`),
        );
      }
      break;
    }
    this.position = position;
    return lastSeq;
  }

  /**
   * Sends the batch pipelined and waits for one ack. Each message carries
   * expectations that chain it to its predecessor: the first expects the
   * stream's last sequence to be `streamSeq`, every later one expects the
   * stream's last message id to be the previous event's id. So a message is
   * stored only directly after its predecessor; a lost message (connection
   * cut mid-batch) makes every later one of the batch fail, and a stranger
   * writing into the stream breaks the chain instead of interleaving.
   * Every message but the last goes out as a plain publish carrying the
   * JetStream headers (Nats-Msg-Id = event id, expectations), the last one as
   * a JetStream publish (msgID + expectations) whose ack is awaited: that
   * ack proves the whole batch is stored, contiguous and in order. One round
   * trip per batch instead of one per event. Returns the stream's new last
   * sequence, or null when the batch's last event was already stored (a
   * copy, dropped by Nats-Msg-Id): then the stream must be asked again.
   */
  /** Whether the stream's message is a copy of this log's event (same id at the same stream position). */
  private async isFromThisLog(msgId: string, body: Partial<RelayedEvent>): Promise<boolean> {
    if (typeof body.streamId !== "string" || typeof body.streamPosition !== "number") return false;
    const [event] = await this.options.store.readStream(body.streamId, { from: body.streamPosition, limit: 1 });
    return event !== undefined && event.id === msgId && event.streamPosition === body.streamPosition && formatPosition(event) === body.position;
  }

  private async publish(nc: NatsConnection, js: JetStreamClient, events: readonly RecordedEvent[], streamSeq: number): Promise<number | null> {
    const lastIndex = events.length - 1;
    for (let index = 0; index < lastIndex; index++) {
      const event = events[index]!;
      const h = this.eventHeaders(event);
      h.set(PubHeaders.MsgIdHdr, event.id);
      h.set(PubHeaders.ExpectedStreamHdr, this.streamName);
      if (index === 0) h.set(PubHeaders.ExpectedLastSeqHdr, String(streamSeq));
      else h.set(PubHeaders.ExpectedLastMsgIdHdr, events[index - 1]!.id);
      nc.publish(this.namespace.qualify(subjectForEvent(event)), JSON.stringify(relayedEvent(event)), { headers: h });
    }
    const last = events[lastIndex]!;
    const ack = await js.publish(this.namespace.qualify(subjectForEvent(last)), JSON.stringify(relayedEvent(last)), {
      msgID: last.id,
      headers: this.eventHeaders(last),
      expect: lastIndex === 0 ? { lastSequence: streamSeq, streamName: this.streamName } : { lastMsgID: events[lastIndex - 1]!.id, streamName: this.streamName },
    });
    return ack.duplicate ? null : ack.seq;
  }

  private eventHeaders(event: RecordedEvent): MsgHdrs {
    const h = headers();
    h.set(EVENT_HEADERS.type, event.type);
    h.set(EVENT_HEADERS.streamId, event.streamId);
    h.set(EVENT_HEADERS.position, formatPosition(event));
    h.set(EVENT_HEADERS.correlationId, event.correlationId);
    return h;
  }

  private async readCheckpoint(): Promise<LogPosition | null> {
    const { rows } = await this.options.pool.query<{ txid: string; global_position: string }>(
      "select transaction_id::text as txid, global_position::text from relay.checkpoints where name = $1",
      [this.name],
    );
    const row = rows[0];
    return row ? { transactionId: BigInt(row.txid), globalPosition: BigInt(row.global_position) } : null;
  }

  private async writeCheckpoint(last: RecordedEvent, count: number): Promise<void> {
    await this.options.pool.query(
      `insert into relay.checkpoints (name, transaction_id, global_position, events_published, updated_at)
       values ($1, $2::text::xid8, $3, $4, now())
       on conflict (name) do update set transaction_id = excluded.transaction_id,
         global_position = excluded.global_position,
         events_published = relay.checkpoints.events_published + excluded.events_published,
         updated_at = now()`,
      [this.name, last.transactionId.toString(), last.globalPosition.toString(), count],
    );
  }

  private recovered(): void {
    this.failures = 0;
    this.lastError = null;
    this.lastErrorAt = null;
  }

  private noteError(error: unknown): void {
    this.failures += 1;
    this.lastError = error instanceof Error ? error.message : String(error);
    this.lastErrorAt = new Date();
    this.options.onError?.(error);
  }

  /** Waits ms, or less when stopping (an aborted wait resolves: the loop then sees it is stopping). */
  private sleep(ms: number): Promise<void> {
    return wait(ms, undefined, { signal: this.stopController.signal }).catch(() => undefined);
  }

  /** Rings when the store reports a new event; the subscription is only a doorbell, the loop reads in batches. */
  private async runWakeFeed(): Promise<void> {
    while (this.running) {
      try {
        const subscription = this.options.store.subscribe({ after: await this.options.store.headPosition(), batchSize: 100 });
        this.subscription = subscription;
        if (!this.running) await subscription.stop();
        for await (const _event of subscription) {
          this.wake.bump();
          if (!this.running) break;
        }
      } catch {
        // The loop still polls; retry the doorbell shortly.
      } finally {
        await this.subscription?.stop().catch(() => {});
        this.subscription = null;
      }
      if (this.running) await this.sleep(1000);
    }
  }
}
