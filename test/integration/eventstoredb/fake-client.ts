import { EventEmitter } from "node:events";
import { Readable } from "node:stream";
import {
  ANY,
  BACKWARDS,
  END,
  NO_STREAM,
  START,
  STREAM_EXISTS,
  StreamNotFoundError,
  WrongExpectedVersionError,
  type AllStreamRecordedEvent,
  type AllStreamResolvedEvent,
  type AppendResult,
  type EventData,
  type Position,
} from "@eventstore/db-client";
import type { EventStoreDbClientLike } from "../../../adapters/eventstore/eventstoredb/store.ts";

/**
 * An in-memory stand-in for EventStoreDBClient, just faithful enough to run
 * the adapter's logic without a server. It mimics what the adapter relies on:
 * JSON (de)serialisation, WrongExpectedVersionError / StreamNotFoundError,
 * $all reads inclusive of fromPosition when forward and exclusive when
 * backward, exclusive catch-up subscriptions whose Readable does not end on
 * unsubscribe(), system events in $all, and ESDB's idempotent success for a
 * NO_STREAM retry of identical event ids. It is not ESDB: the live suite
 * (EVENTSTORE_URL) is what checks the real server.
 */
interface StoredRecord {
  streamId: string;
  revision: bigint;
  id: string;
  type: string;
  data: string;
  metadata: string;
  position: Position;
  created: Date;
}

type ReadOptions = { fromRevision?: bigint | typeof START | typeof END; direction?: string; maxCount?: number | bigint };
type AllOptions = { fromPosition?: Position | typeof START | typeof END; direction?: string; maxCount?: number | bigint };
type SubscribeOptions = { fromPosition?: Position | typeof START | typeof END; filter?: { regex?: string; filterOn: string } };

export class FakeEsdbClient {
  readonly log: StoredRecord[] = [];
  private readonly appended = new EventEmitter();
  private nextPosition = 1000n;
  disposed = false;
  appendCalls = 0;

  constructor() {
    this.appended.setMaxListeners(0);
    this.writeSystemEvent("$stats-127.0.0.1:2113", "$statsCollected");
  }

  asClient(): EventStoreDbClientLike {
    return this as unknown as EventStoreDbClientLike;
  }

  /** What ESDB itself writes now and then ($stats, $metadata, …); the adapter must skip it. */
  writeSystemEvent(streamId: string, type: string): void {
    const revision = BigInt(this.streamOf(streamId).length);
    this.record({ streamId, revision, id: crypto.randomUUID(), type, data: "{}", metadata: "", created: new Date() });
  }

  /** A non-JSON-envelope event, as another application on the same server would write. */
  writeForeignEvent(streamId: string, type: string): void {
    const revision = BigInt(this.streamOf(streamId).length);
    this.record({ streamId, revision, id: crypto.randomUUID(), type, data: '{"x":1}', metadata: '{"app":"other"}', created: new Date() });
  }

  /** Tampering a real ESDB cannot do through its API; the hash chain must notice it. */
  tamper(streamId: string, revision: number, change: (record: { data: unknown; metadata: Record<string, unknown> }) => void): void {
    const record = this.log.find((entry) => entry.streamId === streamId && entry.revision === BigInt(revision));
    if (!record) throw new Error(`no ${streamId}@${revision}`);
    const editable = { data: JSON.parse(record.data) as unknown, metadata: JSON.parse(record.metadata) as Record<string, unknown> };
    change(editable);
    record.data = JSON.stringify(editable.data);
    record.metadata = JSON.stringify(editable.metadata);
  }

  async appendToStream(streamName: string, events: EventData | EventData[], options: { expectedRevision?: unknown } = {}): Promise<AppendResult> {
    this.appendCalls += 1;
    await new Promise((resolve) => setImmediate(resolve));
    const list = Array.isArray(events) ? events : [events];
    const stream = this.streamOf(streamName);
    const current = stream.length === 0 ? NO_STREAM : stream[stream.length - 1]!.revision;
    const expected = (options.expectedRevision ?? ANY) as bigint | typeof ANY | typeof NO_STREAM | typeof STREAM_EXISTS;

    // ESDB: a NO_STREAM append whose ids are the stream's first events is an idempotent success.
    if (expected === NO_STREAM && stream.length >= list.length && list.every((event, index) => stream[index]!.id === event.id)) {
      const last = stream[list.length - 1]!;
      return { success: true, nextExpectedRevision: last.revision, position: last.position };
    }
    const ok =
      expected === ANY ||
      (expected === NO_STREAM && current === NO_STREAM) ||
      (expected === STREAM_EXISTS && current !== NO_STREAM) ||
      (typeof expected === "bigint" && current === expected);
    if (!ok) throw new WrongExpectedVersionError(undefined, { streamName, expected, current });

    let revision = current === NO_STREAM ? -1n : current;
    let last: StoredRecord | undefined;
    for (const event of list) {
      revision += 1n;
      if (event.contentType !== "application/json") throw new Error("the fake stores JSON events only");
      last = this.record({
        streamId: streamName,
        revision,
        id: event.id,
        type: event.type,
        data: JSON.stringify(event.data),
        metadata: event.metadata === undefined ? "" : JSON.stringify(event.metadata),
        created: new Date(),
      });
    }
    return { success: true, nextExpectedRevision: revision, position: last!.position };
  }

  readStream(streamName: string, options: ReadOptions = {}) {
    const stream = this.streamOf(streamName);
    if (stream.length === 0) {
      return withCancel(
        new Readable({
          objectMode: true,
          read() {
            this.destroy(new StreamNotFoundError(undefined, streamName));
          },
        }),
      );
    }
    const backwards = options.direction === BACKWARDS;
    const from = options.fromRevision ?? (backwards ? END : START);
    let selected = stream.filter((record) => {
      if (from === START || from === END) return true;
      return backwards ? record.revision <= from : record.revision >= from;
    });
    if (backwards) selected = selected.reverse();
    if (from === END && !backwards) selected = [];
    selected = selected.slice(0, Number(options.maxCount ?? Number.MAX_SAFE_INTEGER));
    return withCancel(Readable.from(selected.map((record) => ({ event: toRecorded(record) }))));
  }

  readAll(options: AllOptions = {}) {
    const backwards = options.direction === BACKWARDS;
    const from = options.fromPosition ?? (backwards ? END : START);
    let selected = this.log.filter((record) => {
      if (from === START || from === END) return true;
      const order = comparePosition(record.position, from);
      return backwards ? order < 0 : order >= 0;
    });
    if (backwards) selected = selected.reverse();
    if (from === END && !backwards) selected = [];
    selected = selected.slice(0, Number(options.maxCount ?? Number.MAX_SAFE_INTEGER));
    return withCancel(Readable.from(selected.map((record): AllStreamResolvedEvent => ({ event: toRecorded(record) }))));
  }

  subscribeToAll(options: SubscribeOptions = {}) {
    const from = options.fromPosition ?? START;
    const regex = options.filter?.regex !== undefined ? new RegExp(options.filter.regex) : undefined;
    const matches = (record: StoredRecord) =>
      (from === START || (from !== END && comparePosition(record.position, from) > 0)) && (!regex || regex.test(record.type));
    const subscription = new Readable({ objectMode: true, read() {} }) as Readable & { unsubscribe(): Promise<void> };
    let live = true;
    const onAppend = (record: StoredRecord) => {
      if (live && matches(record)) subscription.push({ event: toRecorded(record) });
    };
    // Catch-up first, then live, as a real catch-up subscription.
    setImmediate(() => {
      if (!live) return;
      const backlog = from === END ? [] : this.log.filter(matches);
      for (const record of backlog) subscription.push({ event: toRecorded(record) });
      this.appended.on("record", onAppend);
    });
    subscription.unsubscribe = async () => {
      live = false;
      this.appended.off("record", onAppend);
      // Like the real client: the gRPC call is cancelled, the Readable is not ended.
    };
    return subscription;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
  }

  private streamOf(streamId: string): StoredRecord[] {
    return this.log.filter((record) => record.streamId === streamId);
  }

  private record(fields: Omit<StoredRecord, "position">): StoredRecord {
    const position = { commit: this.nextPosition, prepare: this.nextPosition };
    this.nextPosition += 137n;
    const record = { ...fields, position };
    this.log.push(record);
    this.appended.emit("record", record);
    return record;
  }
}

function comparePosition(a: Position, b: Position): number {
  if (a.commit !== b.commit) return a.commit < b.commit ? -1 : 1;
  if (a.prepare !== b.prepare) return a.prepare < b.prepare ? -1 : 1;
  return 0;
}

function toRecorded(record: StoredRecord): AllStreamRecordedEvent {
  return {
    streamId: record.streamId,
    id: record.id,
    isJson: true,
    revision: record.revision,
    type: record.type,
    created: record.created,
    data: JSON.parse(record.data) as Record<string, unknown>,
    metadata: record.metadata === "" ? undefined : (JSON.parse(record.metadata) as Record<string, unknown>),
    position: record.position,
  } as AllStreamRecordedEvent;
}

function withCancel<T extends Readable>(readable: T): T & { cancel(): Promise<void> } {
  return Object.assign(readable, {
    async cancel() {
      readable.destroy();
    },
  });
}
