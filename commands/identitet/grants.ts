import { PLATFORM_TENANT, type Scope } from "../../domain/shared/envelope.ts";
import { IdentityCommandSchema, type IdentityCommand } from "../../domain/identitet/commands.ts";
import { identityDecider, type SubjectGrantsState } from "../../domain/identitet/decider.ts";
import { identityEventSchemas, type IdentityEvent } from "../../domain/identitet/events.ts";
import type { Role } from "../../domain/identitet/roles.ts";
import { identityStreamId } from "../../domain/identitet/stream.ts";
import type { CommandContext, CommandHandler, CommandResult, ExecuteOptions } from "../handler.ts";
import { executeCommand, type CommandStore } from "../pipeline.ts";

/**
 * A grant is filed under the scope it gives power over: the role's tenant
 * (and project), or the platform scope for platform-wide roles. So a
 * tenant's audit trail shows who was given power inside it, and a caller
 * scoped to one tenant cannot grant inside another (CommandScopeError).
 */
export function roleScope(role: Role): Scope {
  switch (role.role) {
    case "platform-admin":
      return { tenantId: PLATFORM_TENANT };
    case "tenant-admin":
      return { tenantId: role.tenantId };
    case "project-member":
      return { tenantId: role.tenantId, projectId: role.projectId };
    case "auditor":
      return { tenantId: role.tenantId ?? PLATFORM_TENANT };
  }
}

/** Both commands go to the subject's aggregate, stream `identity-<subject>`. */
export const identityHandler: CommandHandler<IdentityCommand, IdentityEvent, SubjectGrantsState> = {
  name: "identitet.subject",
  commandSchema: IdentityCommandSchema,
  decider: identityDecider,
  streamId: (command) => identityStreamId(command.subject),
  eventSchemas: identityEventSchemas,
  scope: (command) => roleScope(command.role),
};

/**
 * Runs an identity command given as raw input (`{ type: "GrantRole", subject, subjectKind, role }`).
 * See executeCommand for what it throws and returns; an already-held grant or
 * a revocation of a role not held appends nothing.
 */
export function executeIdentityCommand(
  store: CommandStore,
  input: unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<IdentityEvent>> {
  return executeCommand(store, identityHandler, input, context, options);
}
