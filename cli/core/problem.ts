import type { FieldIssue, Problem } from "./errors.ts";

/**
 * Reads an error response as RFC 9457 problem details. Servers name failing
 * fields in several conventions; all of them end up in `fields`:
 * - `issues: [{ path, message }]` (this API's validation errors)
 * - `errors: [{ field | path | pointer, message }]` or `errors: { field: message | [messages] }`
 * - `invalid-params` / `invalidParams: [{ name, reason }]` (RFC 9457's example)
 * A body that is not a problem (HTML from a proxy, plain text) still yields a title.
 */
export function parseProblem(status: number, statusText: string, body: unknown): Problem {
  if (!isRecord(body)) {
    const text = typeof body === "string" ? body.trim() : "";
    return {
      title: statusText || `HTTP ${status}`,
      status,
      ...(text && text.length <= 500 && !text.startsWith("<") ? { detail: text } : {}),
      fields: [],
    };
  }
  const title = str(body.title) ?? str(body.error) ?? str(body.message) ?? (statusText || `HTTP ${status}`);
  let detail = str(body.detail) ?? str(body.error_description);
  if (detail === title) detail = undefined;
  const problem: Problem = {
    title,
    status: typeof body.status === "number" ? body.status : status,
    fields: collectFields(body),
    ...(str(body.type) ? { type: str(body.type)! } : {}),
    ...(detail ? { detail } : {}),
    ...(str(body.instance) ? { instance: str(body.instance)! } : {}),
    ...(str(body.code) ? { code: str(body.code)! } : {}),
    ...(str(body.correlationId) ? { correlationId: str(body.correlationId)! } : {}),
  };
  return problem;
}

function collectFields(body: Record<string, unknown>): FieldIssue[] {
  const fields: FieldIssue[] = [];
  for (const key of ["issues", "errors", "invalid-params", "invalidParams", "fields", "validation"]) {
    const value = body[key];
    if (Array.isArray(value)) {
      for (const item of value) {
        const issue = fieldOf(item);
        if (issue) fields.push(issue);
      }
    } else if (isRecord(value)) {
      for (const [field, message] of Object.entries(value)) {
        const messages = Array.isArray(message) ? message : [message];
        for (const m of messages) fields.push({ field, message: typeof m === "string" ? m : JSON.stringify(m) });
      }
    }
  }
  return fields;
}

function fieldOf(item: unknown): FieldIssue | undefined {
  if (typeof item === "string") return { field: "", message: item };
  if (!isRecord(item)) return undefined;
  const message = str(item.message) ?? str(item.reason) ?? str(item.detail) ?? str(item.title) ?? "invalid";
  const rawPath = item.field ?? item.path ?? item.name ?? item.pointer ?? item.instancePath ?? item.param;
  let field = "";
  if (Array.isArray(rawPath)) field = formatPath(rawPath);
  else if (typeof rawPath === "string") field = rawPath.startsWith("/") ? pointerToPath(rawPath) : rawPath;
  return { field, message };
}

function formatPath(path: readonly unknown[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else out += out === "" ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

/** `/limits/vcpus` -> `limits.vcpus` (JSON pointer, RFC 6901). */
function pointerToPath(pointer: string): string {
  const segments = pointer
    .split("/")
    .slice(1)
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  return formatPath(segments);
}

/** The lines printed to stderr for a problem: `error: title: detail`, then one line per failing field. */
export function formatProblem(problem: Problem, message?: string): string[] {
  const head = message ?? (problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
  const lines = [`error: ${head}`];
  for (const field of problem.fields) {
    lines.push(field.field ? `  - ${field.field}: ${field.message}` : `  - ${field.message}`);
  }
  if (problem.correlationId && (problem.status ?? 0) >= 500) lines.push(`  (correlation id ${problem.correlationId})`);
  return lines;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value.trim() !== "" ? value : undefined;
}
