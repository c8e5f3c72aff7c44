import { z } from "zod";
import { ApiProblem } from "../problem.ts";

/**
 * Cursor pagination (keyset). Lists are ordered by the resource id, which
 * never changes, so a page boundary is stable however rows are renamed,
 * suspended or archived meanwhile: every row that exists for the whole walk
 * is returned exactly once. Rows created during the walk appear when their
 * id sorts after the cursor (UUIDv7 ids, the server's default, do).
 *
 * A cursor is opaque to clients: base64url of `{"l":<list>,"k":<last id>}`.
 * It is bound to the list it came from (a tenants cursor on a projects list
 * is a 400), carries no authority (every page is filtered by the caller's
 * visibility again) and does not expire.
 */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

export const PageQuerySchema = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_PAGE_SIZE)
    .default(DEFAULT_PAGE_SIZE)
    .describe(`Page size, 1-${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE})`),
  cursor: z.string().min(1).max(1000).optional().describe("Opaque cursor from the previous page's nextCursor"),
});

export function pageSchema<T extends z.ZodType>(item: T) {
  return z.object({
    items: z.array(item),
    nextCursor: z.string().nullable().describe("Pass as ?cursor= for the next page; null on the last page"),
  });
}

export function encodeCursor(list: string, lastKey: string): string {
  return Buffer.from(JSON.stringify({ l: list, k: lastKey }), "utf8").toString("base64url");
}

const CursorSchema = z.strictObject({ l: z.string(), k: z.string() });

/** The last key of the previous page, or undefined for the first page. */
export function decodeCursor(list: string, cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  let parsed: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error("not base64url");
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalidCursor("it is not a cursor this API made");
  }
  const result = CursorSchema.safeParse(parsed);
  if (!result.success) throw invalidCursor("it is not a cursor this API made");
  if (result.data.l !== list) throw invalidCursor("it belongs to another list");
  return result.data.k;
}

function invalidCursor(why: string): ApiProblem {
  return new ApiProblem("invalid_cursor", `the cursor is not valid here: ${why}`, {
    errors: [{ path: "cursor", message: why, in: "query" }],
  });
}

/** Rows fetched with `limit + 1`: the page and the next cursor (null when this was the last page). */
export function toPage<Row, Item>(
  list: string,
  rows: readonly Row[],
  limit: number,
  keyOf: (row: Row) => string,
  render: (row: Row) => Item,
): { items: Item[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    items: page.map(render),
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(list, keyOf(last)) : null,
  };
}
