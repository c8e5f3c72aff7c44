import { ConcurrencyError } from "../../adapters/eventstore/errors.ts";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import { CommandScopeError, CommandValidationError } from "../../commands/errors.ts";
import { executeTenancyCommand } from "../../commands/sentral/tenancy.ts";
import type { TenancyCommandType } from "../../domain/sentral/commands.ts";
import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import { DomainError } from "../../domain/shared/errors.ts";
import { ProjectionWaitTimeoutError, tenancyProjection } from "../../projections/index.ts";
import {
  canAdministerPlatform,
  canAdministerTenant,
  canSee,
  canWrite,
  type ResourceScope,
} from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { problemKind } from "../problem.ts";
import { actorOf, type GraphqlContext } from "./context.ts";
import { CLIENT_ID_MESSAGE, CLIENT_ID_PATTERN, PLATFORM_SCOPE_MESSAGE } from "../http/client-id.ts";

/**
 * How a mutation runs a command (the GraphQL twin of api/rest/command.ts):
 * 1. authorize with the policy, from the ids in the input: a scope the actor
 *    cannot see answers NotFound (the very object a missing resource gets),
 *    a visible one it may not change answers Forbidden;
 * 2. executeTenancyCommand with the actor, the request's correlation id and
 *    the optional expectedVersion;
 * 3. wait (bounded) until the tenancy read model has applied the write, then
 *    answer the resource as the read model shows it, with the log position;
 *    past the bound answer Accepted (the write is durable).
 * A refused command is a typed member of the result union; only unexpected
 * failures become GraphQL errors.
 */
export type Access =
  | { readonly level: "administer-platform"; readonly scope?: ResourceScope }
  | { readonly level: "administer-tenant"; readonly scope: ResourceScope }
  | { readonly level: "write"; readonly scope: ResourceScope };

export interface FieldErrorView {
  readonly path: string;
  readonly message: string;
  readonly code: string;
}

export type MutationFailure =
  | { readonly __typename: "ValidationFailed"; readonly code: string; readonly message: string; readonly fields: readonly FieldErrorView[] }
  | { readonly __typename: "NotFound"; readonly code: string; readonly message: string; readonly resource: string; readonly resourceId: string }
  | { readonly __typename: "Forbidden"; readonly code: string; readonly message: string }
  | { readonly __typename: "Conflict" | "Rejected"; readonly code: string; readonly message: string; readonly details: Record<string, unknown> | null };

export interface AcceptedView {
  readonly __typename: "Accepted";
  readonly position: string;
  readonly message: string;
}

export interface Written {
  /** "<transactionId>.<globalPosition>" of the write (or of the last event decided on, when nothing changed). */
  readonly position: string;
  /** False when the command's effect already held and nothing was appended. */
  readonly changed: boolean;
}

export interface MutationSpec<Success> {
  readonly access: Access;
  /** The command as input: validated by the command pipeline, whose findings become ValidationFailed. */
  readonly command: { readonly type: TenancyCommandType; readonly tenantId: string; readonly projectId?: string; readonly environmentId?: string } & Record<string, unknown>;
  readonly expectedVersion?: number | null;
  /** Findings about the input beyond the command schema (client-chosen ids); any refuses it as ValidationFailed. */
  readonly inputIssues?: readonly FieldErrorView[];
  /** Reads the result once the read model shows the write; undefined when it does not show the resource. */
  readonly answer: (written: Written) => Promise<Success | undefined>;
}

export type Resource = "tenant" | "project" | "environment";

export function notFound(resource: Resource, id: string): MutationFailure {
  return { __typename: "NotFound", code: `${resource}_not_found`, message: `${resource} ${id} does not exist`, resource, resourceId: id };
}

export async function runMutation<Success>(context: GraphqlContext, spec: MutationSpec<Success>): Promise<Success | MutationFailure | AcceptedView> {
  const actor = actorOf(context);
  const refused = authorize(actor, spec.access);
  if (refused) return refused;
  if (spec.inputIssues && spec.inputIssues.length > 0) return validationFailed(spec.inputIssues);

  const { command } = spec;
  const pinned = spec.expectedVersion !== null && spec.expectedVersion !== undefined;
  let result;
  try {
    // No context scope: the handler files events under the command's own ids, and who may act on those ids
    // was decided above by the policy. (A scope built from unvalidated input would be checked before the
    // command and fail as a bug rather than as ValidationFailed.)
    result = await executeTenancyCommand(context.services.store, command, {
      actor: { kind: actor.kind, id: actor.id },
      correlationId: context.correlationId,
      ...(pinned ? { expectedVersion: spec.expectedVersion! } : {}),
    });
  } catch (error) {
    const failure = failureOf(error, command, pinned);
    if (failure) {
      context.log.info({ command: command.type, code: failure.code }, "command refused");
      return failure;
    }
    throw error;
  }
  context.log.info(
    { command: command.type, stream: result.streamId, version: result.version, appended: result.events.length },
    "command ran",
  );

  const position = result.position ? formatPosition(result.position) : "0.0";
  if (result.position) {
    try {
      await context.services.runner.waitForPosition(tenancyProjection.name, result.position, context.services.writeWaitMs);
    } catch (error) {
      if (error instanceof ProjectionWaitTimeoutError) return accepted(position, context.services.writeWaitMs);
      throw error;
    }
  }
  // What this request read before the write is stale now.
  context.loaders.clearAll();
  const answer = await spec.answer({ position, changed: result.events.length > 0 });
  return answer ?? accepted(position, context.services.writeWaitMs);
}

/** The API's client-id rule (api/http/client-id.ts); the length is the command schema's to report. */
export function clientIdIssues(path: string, id: string | null | undefined, options: { tenant?: boolean } = {}): FieldErrorView[] {
  if (id === null || id === undefined) return [];
  if (!CLIENT_ID_PATTERN.test(id)) return [{ path, message: CLIENT_ID_MESSAGE, code: "invalid_format" }];
  if (options.tenant && id === PLATFORM_TENANT) return [{ path, message: PLATFORM_SCOPE_MESSAGE, code: "custom" }];
  return [];
}

function validationFailed(fields: readonly FieldErrorView[]): MutationFailure {
  return {
    __typename: "ValidationFailed",
    code: "command_invalid",
    message: `the input is not valid: ${fields.map((field) => `${field.path || "(input)"}: ${field.message}`).join("; ")}`,
    fields,
  };
}

function accepted(position: string, waitedMs: number): AcceptedView {
  return {
    __typename: "Accepted",
    position,
    message: `written at ${position}; the read model did not show it within ${waitedMs} ms, read it again shortly`,
  };
}

/** The same decisions as REST's access levels (api/http/access.ts), answered as data. */
function authorize(actor: AuthenticatedActor, access: Access): MutationFailure | null {
  const scope = access.scope;
  if (scope) {
    if (!canSee(actor, { tenantId: scope.tenantId })) return notFound("tenant", scope.tenantId);
    if (scope.projectId !== undefined && !canSee(actor, scope)) return notFound("project", scope.projectId);
  }
  switch (access.level) {
    case "administer-platform":
      return canAdministerPlatform(actor) ? null : forbidden("do this (it needs platform-admin)");
    case "administer-tenant":
      return canAdministerTenant(actor, access.scope.tenantId) ? null : forbidden("administer this tenant");
    case "write":
      return canWrite(actor, access.scope) ? null : forbidden("change this resource");
  }
}

function forbidden(what: string, code = "forbidden"): MutationFailure {
  return { __typename: "Forbidden", code, message: `your roles do not allow you to ${what}` };
}

function failureOf(error: unknown, command: MutationSpec<unknown>["command"], pinned: boolean): MutationFailure | null {
  if (error instanceof CommandValidationError) {
    return validationFailed(error.issues.map((issue) => ({ path: issue.path, message: issue.message, code: issue.code })));
  }
  if (error instanceof DomainError) {
    // Built from the ids asked for, never from what the domain knows: identical to the answer for an invisible one.
    switch (error.code) {
      case "tenant_not_found":
        return notFound("tenant", command.tenantId);
      case "project_not_found":
        return notFound("project", command.projectId ?? String(error.details.projectId ?? ""));
      case "environment_not_found":
        return notFound("environment", command.environmentId ?? String(error.details.environmentId ?? ""));
    }
    const kind = problemKind(error.code).status === 409 ? "Conflict" : "Rejected";
    return { __typename: kind, code: error.code, message: error.message, details: error.details };
  }
  if (error instanceof ConcurrencyError) {
    return {
      __typename: "Conflict",
      code: pinned ? "precondition_failed" : "concurrency_conflict",
      message: pinned
        ? `expectedVersion ${String(error.expected)} no longer holds, the tenant is at ${String(error.actual)}: read it again and decide anew`
        : "the tenant kept changing while this mutation was decided; retry",
      details: { expectedVersion: error.expected, currentVersion: error.actual },
    };
  }
  if (error instanceof CommandScopeError) return forbidden("act outside your scope", error.code);
  return null;
}
