import type { EventMetadata, LogPosition, RecordedEvent } from "../port.ts";
import type { UpcasterRegistry } from "../upcasting.ts";

/**
 * Column list every read uses; int8 and xid8 come back as text and become bigint here.
 * The xid's text form must not be called transaction_id: ORDER BY would bind to
 * that output alias and sort xids as text ("100" before "99").
 */
export const EVENT_COLUMNS = `global_position, transaction_id::text as txid, event_id, stream_id,
  stream_position, event_type, schema_version, data, metadata, occurred_at, hash`;

export interface EventRow {
  global_position: string;
  txid: string;
  event_id: string;
  stream_id: string;
  stream_position: string;
  event_type: string;
  schema_version: number;
  data: unknown;
  metadata: EventMetadata;
  occurred_at: Date;
  hash: Buffer;
}

export function toRecordedEvent(row: EventRow, upcasters: UpcasterRegistry | undefined): RecordedEvent {
  const { schemaVersion, data } = upcasters
    ? upcasters.upcast(row.event_type, row.schema_version, row.data)
    : { schemaVersion: row.schema_version, data: row.data };
  return {
    id: row.event_id,
    type: row.event_type,
    schemaVersion,
    streamId: row.stream_id,
    streamPosition: Number(row.stream_position),
    globalPosition: BigInt(row.global_position),
    transactionId: BigInt(row.txid),
    occurredAt: row.occurred_at,
    data,
    correlationId: row.metadata.correlationId,
    causationId: row.metadata.causationId ?? null,
    actor: row.metadata.actor,
    scope: row.metadata.scope,
    datacenter: row.metadata.datacenter ?? null,
    hash: row.hash.toString("hex"),
  };
}

export function positionOf(event: Pick<RecordedEvent, "transactionId" | "globalPosition">): LogPosition {
  return { transactionId: event.transactionId, globalPosition: event.globalPosition };
}
