import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import {
  DatacenterCommandSchema,
  ReserveHostMacsSchema,
  datacenterEventSchemas,
  datacenterStreamId,
  datacenterDecider,
  macRegistryDecider,
  macRegistryEventSchemas,
  MAC_REGISTRY_STREAM,
  type DatacenterCommand,
  type DatacenterEvent,
  type DatacenterState,
  type MacRegistryEvent,
  type MacRegistryState,
  type ReserveHostMacs,
} from "../../domain/inventory/index.ts";
import type { CommandContext, CommandHandler, CommandResult, ExecuteOptions } from "../handler.ts";
import { executeCommand, type CommandStore } from "../pipeline.ts";

/** Inventory is the platform's own: its events are filed under the platform scope. */
const platformScope = () => ({ tenantId: PLATFORM_TENANT });

export const datacenterHandler: CommandHandler<DatacenterCommand, DatacenterEvent, DatacenterState> = {
  name: "sentral.datacenter",
  commandSchema: DatacenterCommandSchema,
  decider: datacenterDecider,
  streamId: (command) => datacenterStreamId(command.datacenter),
  eventSchemas: datacenterEventSchemas,
  scope: platformScope,
};

export const macRegistryHandler: CommandHandler<ReserveHostMacs, MacRegistryEvent, MacRegistryState> = {
  name: "sentral.mac-registry",
  commandSchema: ReserveHostMacsSchema,
  decider: macRegistryDecider,
  streamId: () => MAC_REGISTRY_STREAM,
  eventSchemas: macRegistryEventSchemas,
  scope: platformScope,
};

/** One datacenter command from raw input (`{ type: "RegisterRack", ... }`); see executeCommand. */
export function executeDatacenterCommand(
  store: CommandStore,
  input: unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<DatacenterEvent>> {
  const datacenter = typeof input === "object" && input !== null ? (input as { datacenter?: unknown }).datacenter : undefined;
  return executeCommand(store, datacenterHandler, input, { ...context, datacenter: typeof datacenter === "string" ? datacenter : null }, options);
}

export function executeMacRegistryCommand(store: CommandStore, input: unknown, context: CommandContext): Promise<CommandResult<MacRegistryEvent>> {
  return executeCommand(store, macRegistryHandler, input, context);
}
