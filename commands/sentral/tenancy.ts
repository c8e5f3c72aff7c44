import type { Scope } from "../../domain/shared/envelope.ts";
import {
  TENANCY_COMMAND_TYPES,
  TenancyCommandSchema,
  type TenancyCommand,
  type TenancyCommandType,
} from "../../domain/sentral/commands.ts";
import { tenancyDecider } from "../../domain/sentral/decider.ts";
import { tenancyEventSchemas, type TenancyEvent } from "../../domain/sentral/events.ts";
import type { TenantState } from "../../domain/sentral/state.ts";
import { tenantStreamId } from "../../domain/sentral/stream.ts";
import type { CommandContext, CommandHandler, CommandResult, ExecuteOptions } from "../handler.ts";
import { executeCommand, type CommandStore } from "../pipeline.ts";

/** Events are filed under the tenant, and the project/environment the command names. */
export function tenancyScope(command: TenancyCommand): Scope {
  const scope: { tenantId: string; projectId?: string; environmentId?: string } = { tenantId: command.tenantId };
  if ("projectId" in command) scope.projectId = command.projectId;
  if ("environmentId" in command) scope.environmentId = command.environmentId;
  return scope;
}

/** All tenancy commands go to the tenant aggregate, stream `tenant-<tenantId>`. */
export const tenantHandler: CommandHandler<TenancyCommand, TenancyEvent, TenantState> = {
  name: "sentral.tenant",
  commandSchema: TenancyCommandSchema,
  decider: tenancyDecider,
  streamId: (command) => tenantStreamId(command.tenantId),
  eventSchemas: tenancyEventSchemas,
  scope: tenancyScope,
};

export type TenancyHandler = typeof tenantHandler;

/** Command type -> handler, for routers (REST/GraphQL mutations) that dispatch on `type`. */
export const tenancyCommands: Readonly<Record<TenancyCommandType, TenancyHandler>> = Object.freeze(
  Object.fromEntries(TENANCY_COMMAND_TYPES.map((type) => [type, tenantHandler])) as Record<TenancyCommandType, TenancyHandler>,
);

/**
 * Runs a tenancy command given as raw input (`{ type: "CreateProject", ... }`).
 * See executeCommand for what it throws and returns.
 */
export function executeTenancyCommand(
  store: CommandStore,
  input: unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<TenancyEvent>> {
  const type = typeof input === "object" && input !== null ? (input as { type?: unknown }).type : undefined;
  const handler =
    typeof type === "string" && Object.hasOwn(tenancyCommands, type)
      ? tenancyCommands[type as TenancyCommandType]
      : tenantHandler; // its schema reports the unknown type
  return executeCommand(store, handler, input, context, options);
}
