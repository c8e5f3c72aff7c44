import { ApiProblem } from "../problem.ts";
import { decodeCursor, encodeCursor } from "../http/pagination.ts";
import { ClientError } from "./errors.ts";

/**
 * Relay connections, forward only (`first`, `after`). Cursors are the REST
 * API's keyset cursors (api/http/pagination.ts): bound to their list
 * (`tenants`, `projects/<tenantId>`, `environments/<tenantId>/<projectId>`),
 * carrying no authority, never expiring; a cursor from one API works in the
 * other. Every page is filtered by the caller's visibility again.
 */
export const DEFAULT_FIRST = 20;
export const MAX_FIRST = 100;

export interface PageArgs {
  readonly first?: number | null;
  readonly after?: string | null;
}

export interface PageRequest {
  readonly first: number;
  /** The last key of the previous page. */
  readonly after: string | undefined;
}

export interface Connection<Node> {
  readonly edges: ReadonlyArray<{ readonly cursor: string; readonly node: Node }>;
  readonly nodes: readonly Node[];
  readonly pageInfo: {
    readonly hasNextPage: boolean;
    readonly hasPreviousPage: boolean;
    readonly startCursor: string | null;
    readonly endCursor: string | null;
  };
}

export const lists = {
  tenants: "tenants",
  projects: (tenantId: string) => `projects/${tenantId}`,
  environments: (tenantId: string, projectId: string) => `environments/${tenantId}/${projectId}`,
} as const;

export function pageRequest(list: string, args: PageArgs): PageRequest {
  const first = args.first ?? DEFAULT_FIRST;
  if (!Number.isInteger(first) || first < 0 || first > MAX_FIRST) {
    throw new ClientError("BAD_USER_INPUT", `first must be between 0 and ${MAX_FIRST}`, { argument: "first" });
  }
  if (args.after === null || args.after === undefined) return { first, after: undefined };
  try {
    return { first, after: decodeCursor(list, args.after) };
  } catch (error) {
    if (error instanceof ApiProblem) throw new ClientError("BAD_USER_INPUT", `after: ${error.message}`, { argument: "after" });
    throw error;
  }
}

/** Rows fetched with `first + 1`: the page, and whether there is more. */
export function toConnection<Row, Node>(
  list: string,
  rows: readonly Row[],
  first: number,
  keyOf: (row: Row) => string,
  view: (row: Row) => Node,
): Connection<Node> {
  const edges = rows.slice(0, first).map((row) => ({ cursor: encodeCursor(list, keyOf(row)), node: view(row) }));
  return {
    edges,
    nodes: edges.map((edge) => edge.node),
    pageInfo: {
      hasNextPage: rows.length > first,
      hasPreviousPage: false,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges[edges.length - 1]?.cursor ?? null,
    },
  };
}
