import type { z } from "zod";

/** One failing field of a command: `path` is dotted (`limits.vcpus`, `items[0].name`), "" for the whole input. */
export interface ValidationIssue {
  readonly path: string;
  readonly message: string;
  /** zod's issue code (`invalid_type`, `too_small`, `invalid_format`, `unrecognized_keys`, ...). */
  readonly code: string;
}

/** The input is not a valid command. Lists every failing field; nothing was read or written. */
export class CommandValidationError extends Error {
  override readonly name = "CommandValidationError";
  readonly code = "command_invalid";
  constructor(readonly issues: readonly ValidationIssue[]) {
    super(`invalid command: ${issues.map((i) => `${i.path || "(input)"}: ${i.message}`).join("; ")}`);
  }
}

/** The command names a tenant (or project/environment) outside the caller's scope. Nothing was written. */
export class CommandScopeError extends Error {
  override readonly name = "CommandScopeError";
  readonly code = "scope_mismatch";
  constructor(
    readonly field: "tenantId" | "projectId" | "environmentId",
    readonly commandValue: string,
    readonly contextValue: string,
  ) {
    super(`command ${field} ${commandValue} is outside the caller's scope (${contextValue})`);
  }
}

/**
 * A stored event could not be read back into the decider's event type: an
 * unknown type, a schema version with no upcaster to the current one, or data
 * that does not match its schema. The stream (or the deployment) is wrong, not
 * the command; nothing was written.
 */
export class EventDecodingError extends Error {
  override readonly name = "EventDecodingError";
  constructor(
    readonly streamId: string,
    readonly streamPosition: number,
    readonly eventType: string,
    readonly reason: "unknown_type" | "unsupported_schema_version" | "invalid_data" | "position_gap",
    detail: string,
  ) {
    super(`stream ${streamId} event ${streamPosition} (${eventType}): ${reason}: ${detail}`);
  }
}

/** The decider produced an event its own schemas refuse: a bug in the decider. Nothing was written. */
export class EventEncodingError extends Error {
  override readonly name = "EventEncodingError";
  constructor(
    readonly eventType: string,
    detail: string,
  ) {
    super(`decided event ${eventType} does not match its schema: ${detail}`);
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else out += out === "" ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

/** zod issues as a flat list of fields; an unknown-keys issue becomes one issue per unknown field. */
export function toValidationIssues(error: z.ZodError): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        issues.push({ path: formatPath([...issue.path, key]), message: "unknown field", code: issue.code });
      }
      continue;
    }
    issues.push({ path: formatPath(issue.path), message: issue.message, code: issue.code });
  }
  return issues;
}
