import { CliError, ExitCode } from "./errors.ts";
import type { ApiClient } from "./http.ts";

/** A resource as the API returns it; the CLI prints it as-is with --output json. */
export type Resource = Record<string, unknown>;

/** The id of a resource (`id` in every API resource). */
export function idOf(resource: Resource): string | undefined {
  return typeof resource.id === "string" ? resource.id : undefined;
}

/** The items of a list answer: a bare array, or `{ items | data | results: [...] }`. */
export function itemsOf(body: unknown): Resource[] {
  if (Array.isArray(body)) return body as Resource[];
  if (typeof body === "object" && body !== null) {
    const record = body as Record<string, unknown>;
    for (const key of ["items", "data", "results", "nodes"]) if (Array.isArray(record[key])) return record[key] as Resource[];
  }
  return [];
}

/** The cursor of the next page, if the answer has one. */
export function nextCursorOf(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  const record = body as Record<string, unknown>;
  const page = (record.page ?? record.pageInfo ?? {}) as Record<string, unknown>;
  for (const value of [record.nextCursor, record.next_cursor, page.nextCursor, page.endCursor && page.hasNextPage ? page.endCursor : undefined]) {
    if (typeof value === "string" && value) return value;
  }
  return undefined;
}

/** The API's largest page. */
const PAGE_SIZE = 200;

/**
 * Every item of a paginated list, following `nextCursor` (at most `limit`
 * items when given). The CLI prints them as one JSON array.
 */
export async function listAll(client: ApiClient, path: string, query: Record<string, string | number | undefined> = {}, limit?: number): Promise<Resource[]> {
  const items: Resource[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const pageSize = Math.min(PAGE_SIZE, limit === undefined ? PAGE_SIZE : limit - items.length);
    const body = await client.get(path, { query: { ...query, limit: pageSize, ...(cursor ? { cursor } : {}) } });
    items.push(...itemsOf(body));
    if (limit !== undefined && items.length >= limit) return items.slice(0, limit);
    cursor = nextCursorOf(body);
    if (!cursor) return items;
  }
  return items;
}

export function notFound(kind: string, ref: string, where?: string): CliError {
  return new CliError(ExitCode.notFound, `${kind} ${JSON.stringify(ref)} not found${where ? ` in ${where}` : ""}`);
}
