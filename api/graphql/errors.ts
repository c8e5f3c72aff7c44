import type { ExecutionResult } from "graphql";
import { GraphQLError } from "./graphql-js.ts";
import type { FastifyBaseLogger } from "fastify";

/**
 * Two kinds of failure, two channels:
 * - a request the API refuses as a whole (syntax, validation, limits, no
 *   actor, a bad argument) is a GraphQL error with a stable
 *   `extensions.code` (ClientErrorCode);
 * - a command that is refused is data: a member of the mutation's result
 *   union (see mutation-errors.ts), never a GraphQL error.
 * Anything else is a bug or an outage: logged, and answered as
 * INTERNAL_SERVER_ERROR with the correlation id and nothing of the cause.
 */
export type ClientErrorCode =
  | "GRAPHQL_PARSE_FAILED"
  | "GRAPHQL_VALIDATION_FAILED"
  | "BAD_USER_INPUT"
  | "BAD_REQUEST"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "QUERY_TOO_DEEP"
  | "QUERY_TOO_COSTLY"
  | "INTERNAL_SERVER_ERROR";

/** An error whose message is meant for the caller. */
export class ClientError extends GraphQLError {
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    extensions: Record<string, unknown> = {},
  ) {
    super(message, { extensions: { ...extensions, code } });
    this.name = "ClientError";
  }
}

/** Errors that mean "this document (with these variables) is not acceptable": HTTP 400 when no data was produced. */
const REQUEST_CODES = new Set<string>([
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "BAD_USER_INPUT",
  "BAD_REQUEST",
  "QUERY_TOO_DEEP",
  "QUERY_TOO_COSTLY",
]);

/** Thrown by the limit hooks: carries every finding so the formatter lists them all (mercurius flattens `.errors`). */
export class RequestRejected extends Error {
  readonly statusCode = 400;
  constructor(readonly errors: readonly GraphQLError[]) {
    super(errors.map((error) => error.message).join("; "));
    this.name = "RequestRejected";
  }
}

export function unauthenticated(): ClientError {
  return new ClientError("UNAUTHENTICATED", "this request needs a bearer token");
}

interface Presented {
  readonly json: ReturnType<GraphQLError["toJSON"]>;
  /** The HTTP status this error alone would call for; undefined: no opinion (200 with data). */
  readonly status?: number;
}

interface FormatterContext {
  readonly reply?: { readonly log: FastifyBaseLogger; readonly request: { readonly id: string } };
  readonly app?: { readonly log: FastifyBaseLogger };
  readonly correlationId?: string;
}

/**
 * mercurius `errorFormatter`: flattens wrapped validation errors, keeps what is
 * meant for the caller, masks everything else, and never answers 5xx.
 * Status: 200 when there is data; without data, 400 for a refused document,
 * the framework's 4xx when it had one (405, 413, 415, 429), else 200.
 */
export function formatExecutionErrors(
  execution: ExecutionResult & { statusCode?: number },
  context: FormatterContext,
): { statusCode: number; response: ExecutionResult } {
  const log = context.reply?.log ?? context.app?.log;
  const correlationId = context.correlationId ?? context.reply?.request.id ?? "unknown";
  const presented = (execution.errors ?? []).flatMap((error) => flatten(error)).map(({ error, status }) => present(error, log, correlationId, status));
  let statusCode = 200;
  if (!execution.data) {
    const statuses = presented.map((p) => p.status).filter((s): s is number => s !== undefined);
    if (statuses.length > 0 && statuses.length === presented.length) statusCode = statuses[0]!;
  }
  return {
    statusCode,
    response: {
      data: execution.data ?? null,
      errors: presented.map((p) => p.json) as unknown as GraphQLError[],
    },
  };
}

/**
 * mercurius wraps findings as `{ errors: [...] }` on one error (validation,
 * a GET mutation, ...); so does RequestRejected. The wrapper's 4xx status
 * applies to what it wraps.
 */
function flatten(error: GraphQLError, status?: number): Array<{ error: GraphQLError; status?: number }> {
  const cause = error.originalError as { errors?: unknown; statusCode?: unknown } | undefined;
  const nested = cause?.errors;
  if (Array.isArray(nested) && nested.length > 0) {
    const wrapperStatus = typeof cause?.statusCode === "number" && cause.statusCode >= 400 && cause.statusCode < 500 ? cause.statusCode : status;
    return nested.flatMap((inner) => flatten(toGraphQLError(inner), wrapperStatus));
  }
  return [{ error, ...(status !== undefined ? { status } : {}) }];
}

function toGraphQLError(error: unknown): GraphQLError {
  if (error instanceof GraphQLError) return error;
  const e = error instanceof Error ? error : new Error(String(error));
  return new GraphQLError(e.message, { originalError: e });
}

function present(error: GraphQLError, log: FastifyBaseLogger | undefined, correlationId: string, wrapperStatus?: number): Presented {
  const cause = rootCause(error);
  const location = { ...(error.locations ? { locations: error.locations } : {}), ...(error.path ? { path: error.path } : {}) };

  if (cause instanceof ClientError) {
    return json(cause.message, cause.extensions, location, REQUEST_CODES.has(cause.code) ? 400 : undefined);
  }
  if (cause instanceof GraphQLError) {
    // graphql-js's own findings: syntax, validation, variable coercion (no cause of ours behind them).
    const code = typeof cause.extensions?.code === "string"
      ? cause.extensions.code
      : error.message.startsWith("Syntax Error")
        ? "GRAPHQL_PARSE_FAILED"
        : error.message.startsWith("Variable ") || error.message.startsWith("Expected ")
          ? "BAD_USER_INPUT"
          : "GRAPHQL_VALIDATION_FAILED";
    return json(error.message, { ...cause.extensions, code }, location, 400);
  }
  const own = (cause as { statusCode?: unknown }).statusCode;
  const status = typeof own === "number" && own >= 400 && own < 500 ? own : wrapperStatus;
  if (status !== undefined) {
    // The framework refused the HTTP request itself (bad JSON, GET mutation, rate limit, ...).
    return json(cause.message, { code: "BAD_REQUEST" }, location, status);
  }
  log?.error({ err: cause, correlationId }, "graphql request failed");
  return json(
    `internal error; quote correlation id ${correlationId}`,
    { code: "INTERNAL_SERVER_ERROR", correlationId },
    location,
    undefined,
  );
}

function rootCause(error: GraphQLError): Error {
  let cause: Error = error;
  while (cause instanceof GraphQLError && cause.originalError && !(cause instanceof ClientError)) cause = cause.originalError;
  return cause;
}

function json(message: string, extensions: Record<string, unknown> | undefined, location: object, status: number | undefined): Presented {
  return {
    json: { message, ...location, extensions: { ...(extensions ?? {}) } } as Presented["json"],
    ...(status !== undefined ? { status } : {}),
  };
}
