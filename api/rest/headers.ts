import { z } from "zod";

/**
 * Request headers the write routes document (and let through: loose objects,
 * every other header stays as sent). Their meaning is enforced by
 * api/http/etag.ts and api/http/idempotency.ts.
 */
export const ifMatchHeader = z.looseObject({
  "if-match": z
    .string()
    .optional()
    .describe("The ETag (W/\"<version>\") the change was decided on; a tenant at another version answers 412"),
});

export const idempotencyHeader = z.looseObject({
  "idempotency-key": z
    .string()
    .optional()
    .describe("1-255 printable ASCII characters; a repeat with the same key and body replays the first response for 24 h"),
});
