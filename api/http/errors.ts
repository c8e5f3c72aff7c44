import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ConcurrencyError } from "../../adapters/eventstore/errors.ts";
import { CommandScopeError, CommandValidationError } from "../../commands/errors.ts";
import { DomainError } from "../../domain/shared/errors.ts";
import { ProjectionWaitTimeoutError } from "../../projections/index.ts";
import { ApiProblem, PROBLEM_CONTENT_TYPE, problem, type FieldError, type Problem } from "../problem.ts";
import { RequestValidationError } from "./validation.ts";

/**
 * Turns every error into an RFC 9457 problem (see api/problem.ts for the
 * status table) and every unknown route into a 404 problem. Set on the root
 * instance, so the plugins' routes (auth, GraphQL) answer problems too unless
 * they set their own handler. 5xx answers say nothing about the cause; the
 * error is logged with the request's correlation id.
 */
export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const { body, headers } = toProblem(error, request);
    if (body.status >= 500) request.log.error({ err: error }, "request failed");
    else request.log.info({ code: body.code, status: body.status }, "request refused");
    return sendProblem(reply, body, headers);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0] ?? request.url;
    return sendProblem(
      reply,
      problem("route_not_found", { detail: `no route ${request.method} ${path}`, instance: path, correlationId: request.id }),
    );
  });
}

/** Sends a problem as a string, so no route's response serializer touches it. */
export function sendProblem(reply: FastifyReply, body: Problem, headers: Record<string, string> = {}): FastifyReply {
  for (const [name, value] of Object.entries(headers)) reply.header(name, value);
  reply.removeHeader("etag");
  return reply.code(body.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
}

export function toProblem(error: unknown, request: FastifyRequest): { body: Problem; headers: Record<string, string> } {
  const instance = request.url.split("?")[0] ?? request.url;
  const base = { instance, correlationId: request.id };
  const fastifyError = error as Partial<FastifyError> & { validation?: unknown; validationContext?: string };

  if (error instanceof ApiProblem) {
    return {
      body: problem(error.code, {
        ...base,
        status: error.status,
        detail: error.message,
        ...(error.extra.errors ? { errors: [...error.extra.errors] } : {}),
        ...(error.extra.details ? { details: error.extra.details } : {}),
      }),
      headers: error.extra.headers ?? {},
    };
  }
  if (error instanceof RequestValidationError) {
    const errors = error.fieldErrors();
    return { body: problem("validation_failed", { ...base, detail: summary(errors), errors }), headers: {} };
  }
  if (Array.isArray(fastifyError.validation)) {
    // A route with a plain JSON schema (ajv), e.g. from another plugin.
    const where = ({ params: "path", body: "body", querystring: "query", headers: "header" } as const)[
      fastifyError.validationContext as "params" | "body" | "querystring" | "headers"
    ] ?? "body";
    const errors: FieldError[] = (fastifyError.validation as Array<{ instancePath?: string; message?: string; params?: { missingProperty?: string } }>).map((v) => ({
      path: pointerToPath(v.instancePath ?? "", v.params?.missingProperty),
      message: v.message ?? "invalid",
      in: where,
    }));
    return { body: problem("validation_failed", { ...base, detail: summary(errors), errors }), headers: {} };
  }
  if (error instanceof CommandValidationError) {
    const errors = error.issues.map((i): FieldError => ({ path: i.path, message: i.message, in: "body" }));
    return { body: problem("command_invalid", { ...base, detail: summary(errors), errors }), headers: {} };
  }
  if (error instanceof DomainError) {
    return { body: problem(error.code, { ...base, detail: error.message, details: error.details }), headers: {} };
  }
  if (error instanceof ConcurrencyError) {
    const pinned = request.headers["if-match"] !== undefined;
    const details = { expectedVersion: error.expected, currentVersion: error.actual };
    return pinned
      ? {
          body: problem("precondition_failed", {
            ...base,
            detail: `If-Match named version ${String(error.expected)}, the tenant is at ${String(error.actual)}: read it again and decide anew`,
            details,
          }),
          headers: {},
        }
      : {
          body: problem("concurrency_conflict", { ...base, detail: "the tenant kept changing while this request was decided; retry", details }),
          headers: {},
        };
  }
  if (error instanceof CommandScopeError) {
    return { body: problem("scope_mismatch", { ...base, detail: error.message }), headers: {} };
  }
  if (error instanceof ProjectionWaitTimeoutError) {
    return { body: problem("projection_lagging", { ...base, detail: "the read model is behind; retry shortly" }), headers: { "retry-after": "1" } };
  }

  const status = typeof fastifyError.statusCode === "number" ? fastifyError.statusCode : 500;
  if (status === 429) {
    return { body: problem("rate_limited", { ...base, detail: fastifyError.message ?? "rate limit exceeded" }), headers: {} };
  }
  if (status >= 400 && status < 500) {
    const code = FRAMEWORK_CODES[fastifyError.code ?? ""] ?? "bad_request";
    return { body: problem(code, { ...base, status, detail: fastifyError.message ?? "bad request" }), headers: {} };
  }
  return { body: problem("internal_error", { ...base, detail: `something went wrong; quote correlation id ${request.id}` }), headers: {} };
}

/** Fastify's own 4xx error codes, as problem codes. */
export const FRAMEWORK_CODES: Readonly<Record<string, string>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: "malformed_body",
  FST_ERR_CTP_EMPTY_JSON_BODY: "malformed_body",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "malformed_body",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_INVALID_TYPE: "unsupported_media_type",
  FST_ERR_CTP_BODY_TOO_LARGE: "body_too_large",
};

function summary(errors: readonly FieldError[]): string {
  const names = errors.map((e) => e.path || "(input)");
  return `${errors.length} invalid field${errors.length === 1 ? "" : "s"}: ${[...new Set(names)].join(", ")}`;
}

function pointerToPath(pointer: string, missing?: string): string {
  const segments = pointer.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (missing) segments.push(missing);
  let out = "";
  for (const segment of segments) out += /^\d+$/.test(segment) ? `[${segment}]` : out === "" ? segment : `.${segment}`;
  return out;
}
