import type { Decider } from "../shared/decider.ts";
import { DomainError } from "../shared/errors.ts";
import type { ReserveHostMacs } from "./commands.ts";
import type { MacRegistryEvent } from "./events.ts";
import { checkMacs } from "./names.ts";

/**
 * The platform-wide MAC registry (stream `inventory-mac-registry`): which host
 * holds which MAC, across every datacenter. A MAC identifies the machine that
 * PXE-boots with it, so two hosts must never share one, even in two
 * datacenters. The datacenter aggregate keeps MACs unique inside itself
 * transactionally; this aggregate does the same across datacenters, and the
 * inventory import reserves here before it registers there (see
 * commands/inventory/import.ts for the order and the compensation).
 */
export interface MacRegistryState {
  /** mac -> holder */
  readonly owners: ReadonlyMap<string, { readonly hostId: string; readonly datacenter: string }>;
  /** hostId -> the MACs it holds, sorted */
  readonly held: ReadonlyMap<string, readonly string[]>;
}

export const initialMacRegistryState: MacRegistryState = { owners: new Map(), held: new Map() };

function decide(command: ReserveHostMacs, state: MacRegistryState): MacRegistryEvent[] | DomainError {
  const macs = checkMacs(command.macs, command.hostId);
  if (macs instanceof DomainError) return macs;
  const wanted = [...macs].sort();
  for (const mac of wanted) {
    const owner = state.owners.get(mac);
    if (owner && owner.hostId !== command.hostId) {
      return new DomainError("mac_in_use", `MAC ${mac} belongs to host ${owner.hostId} in datacenter ${owner.datacenter}`, {
        mac, hostId: owner.hostId, datacenter: owner.datacenter,
      });
    }
  }
  const current = state.held.get(command.hostId) ?? [];
  if (current.length === wanted.length && current.every((m, i) => m === wanted[i])) return [];
  return [{ type: "HostMacsReserved", data: { hostId: command.hostId, datacenter: command.datacenter, macs: wanted } }];
}

function evolve(state: MacRegistryState, event: MacRegistryEvent): MacRegistryState {
  const { hostId, datacenter, macs } = event.data;
  const owners = new Map(state.owners);
  for (const mac of state.held.get(hostId) ?? []) owners.delete(mac);
  for (const mac of macs) owners.set(mac, { hostId, datacenter });
  const held = new Map(state.held);
  if (macs.length === 0) held.delete(hostId);
  else held.set(hostId, macs);
  return { owners, held };
}

export const macRegistryDecider: Decider<ReserveHostMacs, MacRegistryEvent, MacRegistryState> = {
  initialState: initialMacRegistryState,
  decide,
  evolve,
};
