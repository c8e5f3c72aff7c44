import type { RecordedEvent } from "../adapters/eventstore/port.ts";
import { EventDecodingError, EventEncodingError } from "./errors.ts";
import type { DomainEvent, EventSchemaRegistry } from "./handler.ts";

/**
 * Stored event -> decider event. The store has already upcast old versions
 * (RecordedEvent.schemaVersion is the version after upcasting), so anything
 * but the registry's current version means an upcaster is missing.
 */
export function decodeEvent<Event extends DomainEvent>(recorded: RecordedEvent, registry: EventSchemaRegistry): Event {
  if (!Object.hasOwn(registry, recorded.type)) {
    throw new EventDecodingError(recorded.streamId, recorded.streamPosition, recorded.type, "unknown_type", "no schema registered");
  }
  const entry = registry[recorded.type]!;
  if (recorded.schemaVersion !== entry.schemaVersion) {
    throw new EventDecodingError(
      recorded.streamId,
      recorded.streamPosition,
      recorded.type,
      "unsupported_schema_version",
      `stored as version ${recorded.schemaVersion}, this code reads version ${entry.schemaVersion}`,
    );
  }
  const parsed = entry.schema.safeParse(recorded.data);
  if (!parsed.success) {
    throw new EventDecodingError(recorded.streamId, recorded.streamPosition, recorded.type, "invalid_data", parsed.error.message);
  }
  return { type: recorded.type, data: parsed.data } as Event;
}

/** Decider event -> validated data and schema version, refusing what its own schema refuses. */
export function encodeEvent(event: DomainEvent, registry: EventSchemaRegistry): { schemaVersion: number; data: unknown } {
  if (!Object.hasOwn(registry, event.type)) throw new EventEncodingError(event.type, "no schema registered");
  const entry = registry[event.type]!;
  const parsed = entry.schema.safeParse(event.data);
  if (!parsed.success) throw new EventEncodingError(event.type, parsed.error.message);
  return { schemaVersion: entry.schemaVersion, data: parsed.data };
}
