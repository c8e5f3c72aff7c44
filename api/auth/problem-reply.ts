import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import { ConcurrencyError } from "../../adapters/eventstore/errors.ts";
import { CommandScopeError, CommandValidationError, toValidationIssues } from "../../commands/errors.ts";
import { DomainError } from "../../domain/shared/errors.ts";
import { FRAMEWORK_CODES } from "../http/errors.ts";
import { ApiProblem, PROBLEM_CONTENT_TYPE, problem, type FieldError, type Problem } from "../problem.ts";

/**
 * Problems for the identity plugin and routes, from the API's one table of
 * codes (api/problem.ts). The identity routes render their own errors because
 * they also run in a bare fastify instance (tests, other compositions)
 * without the server's error handler.
 */
export { ApiProblem as AuthProblem };

export function problemBody(request: FastifyRequest, error: ApiProblem): Problem {
  return problem(error.code, {
    status: error.status,
    detail: error.message,
    instance: request.url.split("?")[0] ?? request.url,
    correlationId: request.id,
    ...(error.extra.errors ? { errors: [...error.extra.errors] } : {}),
    ...(error.extra.details ? { details: error.extra.details } : {}),
  });
}

/** Sends the problem as a string (no route serializer touches it). */
export function sendAuthProblem(request: FastifyRequest, reply: FastifyReply, error: ApiProblem): FastifyReply {
  for (const [name, value] of Object.entries(error.extra.headers ?? {})) reply.header(name, value);
  return reply.code(error.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problemBody(request, error)));
}

/** Parses `input` or throws a 400 validation_failed problem listing every failing field. */
export function parseOr400<T>(schema: z.ZodType<T>, input: unknown, where: FieldError["in"]): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const errors = toValidationIssues(parsed.error).map(({ path, message }) => ({ path, message, ...(where ? { in: where } : {}) }));
  const names = [...new Set(errors.map((e) => e.path || "(input)"))];
  throw new ApiProblem("validation_failed", `${errors.length} invalid field${errors.length === 1 ? "" : "s"}: ${names.join(", ")}`, { errors });
}


/** The problem for an error the identity routes know; null for anything else (left to the server's handler). */
export function toAuthProblem(error: unknown): ApiProblem | null {
  if (error instanceof ApiProblem) return error;
  if (error instanceof DomainError) return new ApiProblem(error.code, error.message, { details: error.details });
  if (error instanceof CommandValidationError) {
    return new ApiProblem("command_invalid", error.message, { errors: error.issues.map((i) => ({ path: i.path, message: i.message, in: "body" as const })) });
  }
  if (error instanceof CommandScopeError) return new ApiProblem("scope_mismatch", error.message);
  if (error instanceof ConcurrencyError) return new ApiProblem("concurrency_conflict", "the subject's grants kept changing while this request was decided; retry");
  const code = FRAMEWORK_CODES[(error as Partial<FastifyError>).code ?? ""];
  if (code) return new ApiProblem(code, (error as Error).message);
  return null;
}
