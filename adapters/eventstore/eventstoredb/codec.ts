import {
  ANY,
  NO_STREAM,
  STREAM_EXISTS,
  type AppendExpectedRevision,
  type CurrentRevision,
  type Position,
  type RecordedEvent as EsdbRecordedEvent,
} from "@eventstore/db-client";
import type { Actor, Scope } from "../../../domain/shared/envelope.ts";
import { contentDigest, toJsonValue } from "../hashing.ts";
import type { EventMetadata, ExpectedVersion, LogPosition, RecordedEvent } from "../port.ts";

/**
 * Pure mappings between the port's shapes and EventStoreDB's. Kept apart from
 * the store so they can be checked without a server.
 */

/** The port's ExpectedVersion as the client's expectedRevision. */
export function toExpectedRevision(expected: ExpectedVersion): AppendExpectedRevision {
  switch (expected) {
    case "no_stream":
      return NO_STREAM;
    case "exists":
      return STREAM_EXISTS;
    case "any":
      return ANY;
    default:
      if (!Number.isSafeInteger(expected) || expected < 0) {
        throw new RangeError(`expected version must be a non-negative integer, "no_stream", "exists" or "any": ${String(expected)}`);
      }
      return BigInt(expected);
  }
}

/** The client's current revision (bigint or "no_stream"; older servers send -1) as the port's actual version. */
export function fromCurrentRevision(current: CurrentRevision | undefined): number | "no_stream" {
  if (current === undefined || current === NO_STREAM) return "no_stream";
  return current < 0n ? "no_stream" : Number(current);
}

/** LogPosition.transactionId ← commit, LogPosition.globalPosition ← prepare: same order as $all. */
export function toLogPosition(position: Position): LogPosition {
  return { transactionId: position.commit, globalPosition: position.prepare };
}

export function toEsdbPosition(position: LogPosition): Position {
  return { commit: position.transactionId, prepare: position.globalPosition };
}

/** System streams ($stats-…, $$metadata streams, $streams…) and system/link event types ($metadata, $>, …). */
export function isSystemEvent(event: { streamId: string; type: string }): boolean {
  return event.type.startsWith("$") || event.streamId.startsWith("$");
}

/**
 * What this adapter writes into ESDB's per-event metadata. `$correlationId` and
 * `$causationId` are ESDB's own conventional keys (its $by_correlation_id
 * projection reads them); they duplicate envelope fields and are not hashed.
 */
export interface StoredEnvelope {
  readonly correlationId: string;
  readonly causationId: string | null;
  readonly actor: Actor;
  readonly scope: Scope;
  readonly datacenter: string | null;
  readonly occurredAt: string;
  readonly schemaVersion: number;
  /** Hex SHA-256 (hashing.ts contentDigest). */
  readonly contentDigest: string;
  /** Hex SHA-256 (hashing.ts chainHash). */
  readonly hash: string;
  readonly $correlationId?: string;
  readonly $causationId?: string;
}

export function encodeEnvelope(
  metadata: EventMetadata,
  fields: { occurredAt: Date; schemaVersion: number; contentDigest: Buffer; hash: Buffer },
): StoredEnvelope {
  const envelope: StoredEnvelope = {
    ...toJsonValue(metadata),
    occurredAt: fields.occurredAt.toISOString(),
    schemaVersion: fields.schemaVersion,
    contentDigest: fields.contentDigest.toString("hex"),
    hash: fields.hash.toString("hex"),
    $correlationId: metadata.correlationId,
    ...(metadata.causationId === null ? {} : { $causationId: metadata.causationId }),
  };
  return envelope;
}

/** An event as stored, before upcasting: what the hash chain covers. */
export interface StoredEvent {
  readonly id: string;
  readonly type: string;
  readonly streamId: string;
  readonly streamPosition: number;
  readonly position: LogPosition;
  readonly schemaVersion: number;
  readonly occurredAt: Date;
  readonly data: unknown;
  readonly metadata: EventMetadata;
  readonly contentDigest: string;
  readonly hash: string;
}

/** Why an ESDB event is not one of ours, or undefined when it is. */
export function foreignReason(event: EsdbRecordedEvent): string | undefined {
  if (!event.isJson) return "its content type is not application/json";
  const meta = event.metadata as Partial<Record<keyof StoredEnvelope, unknown>> | undefined;
  if (meta === null || typeof meta !== "object" || meta instanceof Uint8Array) return "it has no JSON metadata";
  const missing: string[] = [];
  if (typeof meta.correlationId !== "string") missing.push("correlationId");
  if (!(typeof meta.causationId === "string" || meta.causationId === null)) missing.push("causationId");
  if (meta.actor === null || typeof meta.actor !== "object") missing.push("actor");
  if (meta.scope === null || typeof meta.scope !== "object") missing.push("scope");
  if (!(typeof meta.datacenter === "string" || meta.datacenter === null)) missing.push("datacenter");
  if (typeof meta.occurredAt !== "string" || Number.isNaN(Date.parse(meta.occurredAt))) missing.push("occurredAt");
  if (!Number.isInteger(meta.schemaVersion)) missing.push("schemaVersion");
  if (typeof meta.contentDigest !== "string") missing.push("contentDigest");
  if (typeof meta.hash !== "string") missing.push("hash");
  return missing.length === 0 ? undefined : `its metadata lacks the Dataverket envelope (${missing.join(", ")})`;
}

export class ForeignEventError extends Error {
  override readonly name = "ForeignEventError";
  constructor(
    readonly streamId: string,
    readonly streamPosition: number,
    readonly eventId: string,
    readonly reason: string,
  ) {
    super(`EventStoreDB event ${eventId} at ${streamId}@${streamPosition} was not written by this adapter: ${reason}`);
  }
}

/** Decodes one ESDB event written by this adapter. */
export function decodeStored(event: EsdbRecordedEvent): StoredEvent {
  const streamPosition = Number(event.revision);
  const reason = foreignReason(event);
  if (reason !== undefined) throw new ForeignEventError(event.streamId, streamPosition, event.id, reason);
  // Servers older than 22.6 leave the position off stream reads.
  const position = event.position;
  if (position === undefined) {
    throw new Error(
      `EventStoreDB returned ${event.streamId}@${streamPosition} without its log position: ` +
        "the server is older than 22.6; this adapter needs EventStoreDB/KurrentDB 22.6 or newer",
    );
  }
  const meta = event.metadata as unknown as StoredEnvelope;
  return {
    id: event.id.toLowerCase(),
    type: event.type,
    streamId: event.streamId,
    streamPosition,
    position: toLogPosition(position),
    schemaVersion: meta.schemaVersion,
    occurredAt: new Date(meta.occurredAt),
    data: event.data,
    metadata: {
      correlationId: meta.correlationId,
      causationId: meta.causationId,
      actor: meta.actor,
      scope: meta.scope,
      datacenter: meta.datacenter,
    },
    contentDigest: meta.contentDigest,
    hash: meta.hash,
  };
}

/** The digest of an event as read back, to compare with the one it was written with. */
export function recomputeDigest(event: StoredEvent): Buffer {
  return contentDigest({
    streamId: event.streamId,
    eventId: event.id,
    type: event.type,
    schemaVersion: event.schemaVersion,
    occurredAt: event.occurredAt,
    data: event.data,
    metadata: event.metadata,
  });
}

/** The port's RecordedEvent, with the registry's upcasters applied. */
export function toRecorded(
  event: StoredEvent,
  upcast: (type: string, schemaVersion: number, data: unknown) => { schemaVersion: number; data: unknown },
): RecordedEvent {
  const upcasted = upcast(event.type, event.schemaVersion, event.data);
  return {
    id: event.id,
    type: event.type,
    schemaVersion: upcasted.schemaVersion,
    streamId: event.streamId,
    streamPosition: event.streamPosition,
    globalPosition: event.position.globalPosition,
    transactionId: event.position.transactionId,
    occurredAt: event.occurredAt,
    data: upcasted.data,
    hash: event.hash,
    correlationId: event.metadata.correlationId,
    causationId: event.metadata.causationId,
    actor: event.metadata.actor,
    scope: event.metadata.scope,
    datacenter: event.metadata.datacenter,
  };
}
