import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import {
  HostCommandSchema,
  PoolCommandSchema,
  hostDecider,
  hostEventSchemas,
  hostStreamId,
  poolDecider,
  poolEventSchemas,
  poolStreamId,
  type HostCommand,
  type HostCommandInput,
  type HostEvent,
  type HostState,
  type PoolCommand,
  type PoolCommandInput,
  type PoolEvent,
  type PoolState,
} from "../../domain/maskin/index.ts";
import { fold } from "../../domain/shared/decider.ts";
import type { CommandContext, CommandHandler, CommandResult, ExecuteOptions, StreamVersion } from "../handler.ts";
import { executeCommand, loadStream, type CommandStore } from "../pipeline.ts";

/**
 * Maskin commands. The hardware is the platform's: pool and host events are
 * filed under the platform scope (the tenant/project a host is allocated to is
 * in the event data), so callers run them with a platform context (the saga
 * runtime, the boot service, the maskin worker).
 */
const platformScope = () => ({ tenantId: PLATFORM_TENANT });

export const poolHandler: CommandHandler<PoolCommand, PoolEvent, PoolState> = {
  name: "maskin.pool",
  commandSchema: PoolCommandSchema,
  decider: poolDecider,
  streamId: (command) => poolStreamId(command.datacenter),
  eventSchemas: poolEventSchemas,
  scope: platformScope,
};

export const hostHandler: CommandHandler<HostCommand, HostEvent, HostState> = {
  name: "maskin.host",
  commandSchema: HostCommandSchema,
  decider: hostDecider,
  streamId: (command) => hostStreamId(command.hostId),
  eventSchemas: hostEventSchemas,
  scope: platformScope,
};

function datacenterOf(input: unknown): string | null {
  const dc = typeof input === "object" && input !== null ? (input as { datacenter?: unknown }).datacenter : undefined;
  return typeof dc === "string" ? dc : null;
}

/** A pool command (`AllocateHost`, `ReturnHostToPool`) from raw input; see executeCommand. */
export function executePoolCommand(
  store: CommandStore,
  input: PoolCommandInput | unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<PoolEvent>> {
  return executeCommand(store, poolHandler, input, { ...context, datacenter: context.datacenter ?? datacenterOf(input) }, options);
}

/** A host command (`StartProvisioning`, `RecordNetbootFetched`, `RecordPowerObservation`, ...) from raw input. */
export function executeHostCommand(
  store: CommandStore,
  input: HostCommandInput | unknown,
  context: CommandContext,
  options?: ExecuteOptions,
): Promise<CommandResult<HostEvent>> {
  return executeCommand(store, hostHandler, input, { ...context, datacenter: context.datacenter ?? datacenterOf(input) }, options);
}

/** A host's current state, folded from its stream (`available` for a host without one), with the stream version. */
export async function loadHost(store: Pick<CommandStore, "readStream">, hostId: string): Promise<{ state: HostState; version: StreamVersion }> {
  const loaded = await loadStream<HostEvent>(store, hostStreamId(hostId), hostEventSchemas);
  return { state: fold(hostDecider, loaded.events), version: loaded.version };
}

/** A datacenter's pool (who holds which host), folded from its stream. */
export async function loadPool(store: Pick<CommandStore, "readStream">, datacenter: string): Promise<{ state: PoolState; version: StreamVersion }> {
  const loaded = await loadStream<PoolEvent>(store, poolStreamId(datacenter), poolEventSchemas);
  return { state: fold(poolDecider, loaded.events), version: loaded.version };
}
