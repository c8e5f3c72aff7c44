import type { FastifySchemaCompiler } from "fastify";
import type { z } from "zod";
import { toValidationIssues } from "../../commands/errors.ts";
import type { FieldError } from "../problem.ts";

/**
 * The route schemas of the REST API are zod schemas; this compiler validates
 * with them and keeps every failing field (an unknown key becomes one issue
 * per key, as for commands) so the error handler can list them all.
 *
 * Fastify validates path params, then the body, then the query, then headers,
 * and stops at the first part that fails: a problem lists every failing field
 * *of that part*.
 */
export class RequestValidationError extends Error {
  override readonly name = "RequestValidationError";
  readonly statusCode = 400;
  readonly code = "FST_ERR_VALIDATION";
  /** Set by fastify: "params" | "body" | "querystring" | "headers". */
  validationContext?: string;
  constructor(readonly issues: ReadonlyArray<{ path: string; message: string }>) {
    super(`invalid request: ${issues.map((i) => `${i.path || "(input)"}: ${i.message}`).join("; ")}`);
  }

  fieldErrors(): FieldError[] {
    const where = LOCATION[this.validationContext ?? "body"] ?? "body";
    return this.issues.map((issue) => ({ path: issue.path, message: issue.message, in: where }));
  }
}

const LOCATION: Record<string, FieldError["in"]> = { params: "path", body: "body", querystring: "query", headers: "header" };

export const zodValidatorCompiler: FastifySchemaCompiler<z.ZodType> = ({ schema }) => (data) => {
  const result = schema.safeParse(data);
  if (result.success) return { value: result.data };
  return { error: new RequestValidationError(toValidationIssues(result.error)) };
};
