import { createHash } from "node:crypto";
import jcs from "canonicalize";
import type { EventMetadata } from "./port.ts";

/**
 * The tamper-evidence scheme shared by every adapter:
 *   contentDigest = SHA-256(JCS([streamId, eventId, type, schemaVersion, occurredAt, data, metadata]))
 *   hash          = SHA-256(previousHash || int64be(streamPosition) || contentDigest)
 * JCS (RFC 8785) gives the same bytes for the same JSON value however the
 * store orders keys or spaces, so a digest recomputed from a read row matches.
 */
// The package is CommonJS (module.exports = fn) but its types declare an ES default export,
// which TypeScript's NodeNext resolution reads as `.default`; at runtime the import is the function.
const canonicalize = jcs as unknown as (input: unknown) => string | undefined;

export interface HashedContent {
  readonly streamId: string;
  readonly eventId: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly occurredAt: Date;
  readonly data: unknown;
  readonly metadata: EventMetadata;
}

/** What a JSON column gives back: no undefined, no prototypes. */
export function toJsonValue<T>(value: T): T {
  return value === undefined ? (null as T) : (JSON.parse(JSON.stringify(value)) as T);
}

/**
 * `data` and `metadata` must already be plain JSON values (see toJsonValue):
 * what the store holds, or what a reader got back from it.
 */
export function contentDigest(content: HashedContent): Buffer {
  const text = canonicalize([
    content.streamId,
    content.eventId.toLowerCase(),
    content.type,
    content.schemaVersion,
    content.occurredAt.toISOString(),
    content.data,
    content.metadata,
  ]);
  if (text === undefined) throw new TypeError("event content is not serializable as JSON");
  return createHash("sha256").update(text, "utf8").digest();
}

export const EMPTY_HASH = Buffer.alloc(0);

export function chainHash(previous: Buffer, streamPosition: number, digest: Buffer): Buffer {
  const position = Buffer.alloc(8);
  position.writeBigInt64BE(BigInt(streamPosition));
  return createHash("sha256").update(previous).update(position).update(digest).digest();
}
