import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import { ConcurrencyError } from "../../adapters/eventstore/errors.ts";
import { CommandScopeError, CommandValidationError } from "../../commands/errors.ts";
import { DomainError } from "../../domain/shared/errors.ts";

/**
 * RFC 9457 problems for the identity plugin and routes.
 *
 * TO MERGE into api/problem.ts: written here so Identitet did not wait for
 * the shared helper. The shape is the same (`type`
 * https://dataverket.dev/problems/<code>, title, status, detail, code,
 * instance, correlationId, errors[], details); the codes below that
 * api/problem.ts does not list yet are: invalid_token (401),
 * invalid_credentials (401), service_account_not_found (404),
 * subject_kind_mismatch (409), invalid_role (422), invalid_subject (422),
 * identity_provider_unavailable (503).
 */
export const AUTH_PROBLEM_BASE = "https://dataverket.dev/problems/";
export const PROBLEM_CONTENT_TYPE = "application/problem+json";

const KINDS = {
  validation_failed: { status: 400, title: "The request is not valid" },
  malformed_body: { status: 400, title: "The request body could not be read" },
  command_invalid: { status: 400, title: "The command is not valid" },
  invalid_cursor: { status: 400, title: "The cursor is not valid for this list" },
  unauthenticated: { status: 401, title: "Authentication required" },
  invalid_token: { status: 401, title: "The bearer token is not valid" },
  invalid_credentials: { status: 401, title: "The credentials are not valid" },
  forbidden: { status: 403, title: "Not allowed" },
  scope_mismatch: { status: 403, title: "Outside the caller's scope" },
  tenant_not_found: { status: 404, title: "Tenant not found" },
  project_not_found: { status: 404, title: "Project not found" },
  service_account_not_found: { status: 404, title: "Service account not found" },
  subject_kind_mismatch: { status: 409, title: "The subject is of another kind" },
  concurrency_conflict: { status: 409, title: "The subject's grants changed concurrently" },
  unsupported_media_type: { status: 415, title: "Send application/json" },
  invalid_role: { status: 422, title: "Not a role" },
  invalid_subject: { status: 422, title: "Not a subject" },
  internal_error: { status: 500, title: "Internal error" },
  identity_provider_unavailable: { status: 503, title: "The identity provider cannot be reached" },
} as const satisfies Record<string, { status: number; title: string }>;

export type AuthProblemCode = keyof typeof KINDS;

export interface FieldError {
  readonly path: string;
  readonly message: string;
  readonly in?: "body" | "query" | "path" | "header";
}

export interface AuthProblemBody {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly code: string;
  readonly instance?: string;
  readonly correlationId?: string;
  readonly errors?: readonly FieldError[];
  readonly details?: Record<string, unknown>;
}

/** Thrown inside the identity routes; their error handler renders it. */
export class AuthProblem extends Error {
  override readonly name = "AuthProblem";
  readonly status: number;
  constructor(
    readonly code: string,
    detail: string,
    readonly extra: { errors?: readonly FieldError[]; details?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(detail);
    this.status = Object.hasOwn(KINDS, code) ? KINDS[code as AuthProblemCode].status : 422;
  }
}

function titleOf(code: string): string {
  return Object.hasOwn(KINDS, code) ? KINDS[code as AuthProblemCode].title : "A business rule refused the request";
}

export function problemBody(request: FastifyRequest, problem: AuthProblem): AuthProblemBody {
  const instance = request.url.split("?")[0] ?? request.url;
  return {
    type: `${AUTH_PROBLEM_BASE}${problem.code}`,
    title: titleOf(problem.code),
    status: problem.status,
    detail: problem.message,
    code: problem.code,
    instance,
    correlationId: request.id,
    ...(problem.extra.errors ? { errors: [...problem.extra.errors] } : {}),
    ...(problem.extra.details ? { details: problem.extra.details } : {}),
  };
}

/** Sends the problem as a string (no route serializer touches it). */
export function sendAuthProblem(request: FastifyRequest, reply: FastifyReply, problem: AuthProblem): FastifyReply {
  for (const [name, value] of Object.entries(problem.extra.headers ?? {})) reply.header(name, value);
  return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problemBody(request, problem)));
}

/** zod issues as field errors (path dotted, `[i]` for indexes; unknown keys one error each). */
export function fieldErrors(error: z.ZodError, where: FieldError["in"]): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of error.issues) {
    const keys = issue.code === "unrecognized_keys" ? issue.keys.map((key) => [...issue.path, key]) : [issue.path];
    for (const path of keys) {
      out.push({ path: formatPath(path), message: issue.code === "unrecognized_keys" ? "unknown field" : issue.message, ...(where ? { in: where } : {}) });
    }
  }
  return out;
}

/** Parses `input` or throws a 400 validation_failed problem listing every failing field. */
export function parseOr400<T>(schema: z.ZodType<T>, input: unknown, where: FieldError["in"]): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const errors = fieldErrors(parsed.error, where);
  const names = [...new Set(errors.map((e) => e.path || "(input)"))];
  throw new AuthProblem("validation_failed", `${errors.length} invalid field${errors.length === 1 ? "" : "s"}: ${names.join(", ")}`, { errors });
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) out += typeof segment === "number" ? `[${segment}]` : out === "" ? String(segment) : `.${String(segment)}`;
  return out;
}

const FRAMEWORK_CODES: Record<string, AuthProblemCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: "malformed_body",
  FST_ERR_CTP_EMPTY_JSON_BODY: "malformed_body",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "malformed_body",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_INVALID_TYPE: "unsupported_media_type",
};

/** The problem for an error the identity routes know; null for anything else (left to the server's handler). */
export function toAuthProblem(error: unknown): AuthProblem | null {
  if (error instanceof AuthProblem) return error;
  if (error instanceof DomainError) return new AuthProblem(error.code, error.message, { details: error.details });
  if (error instanceof CommandValidationError) {
    return new AuthProblem("command_invalid", error.message, { errors: error.issues.map((i) => ({ path: i.path, message: i.message, in: "body" as const })) });
  }
  if (error instanceof CommandScopeError) return new AuthProblem("scope_mismatch", error.message);
  if (error instanceof ConcurrencyError) return new AuthProblem("concurrency_conflict", "the subject's grants kept changing while this request was decided; retry");
  const code = FRAMEWORK_CODES[(error as Partial<FastifyError>).code ?? ""];
  if (code) return new AuthProblem(code, (error as Error).message);
  return null;
}
