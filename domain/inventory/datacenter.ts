import type { Decider } from "../shared/decider.ts";
import { DomainError } from "../shared/errors.ts";
import {
  DEFAULT_BMC_PORTS,
  type ApproveHostIdentityChange,
  type DatacenterCommand,
  type RegisterDatacenter,
  type RegisterHost,
  type RegisterLink,
  type RegisterRack,
  type RegisterSwitch,
} from "./commands.ts";
import type { BmcSettings, DatacenterEvent, HostAttributes, HostIdentity } from "./events.ts";
import { checkMacs, checkName } from "./names.ts";
import {
  endKey,
  heldIdentities,
  hostByName,
  initialDatacenterState,
  linkKey,
  orderEnds,
  present,
  sameIdentity,
  withEntry,
  type DatacenterState,
  type HostState,
  type PresentDatacenter,
} from "./state.ts";

/**
 * The datacenter aggregate (stream `datacenter-<name>`): racks, hosts,
 * switches and links of one failure domain. It owns the pools that must be
 * unique inside it (host names, serials, MACs, switch names, cabled ports),
 * so those are decided on one stream. MACs are also unique platform-wide:
 * that is the MAC registry's job (mac-registry.ts).
 */

type Result = DatacenterEvent[] | DomainError;

function requireDatacenter(state: DatacenterState, datacenter: string): PresentDatacenter | DomainError {
  if (state.status === "absent") {
    return new DomainError("datacenter_not_found", `datacenter ${datacenter} does not exist`, { datacenter });
  }
  if (state.datacenter !== datacenter) throw new Error(`decided a command for datacenter ${datacenter} on the state of ${state.datacenter}`);
  return state;
}

function requireRack(dc: PresentDatacenter, rack: string): DomainError | undefined {
  if (dc.racks.has(rack)) return undefined;
  return new DomainError("rack_not_found", `datacenter ${dc.datacenter} has no rack ${rack}`, { datacenter: dc.datacenter, rack });
}

export function decideRegisterDatacenter(command: RegisterDatacenter, state: DatacenterState): Result {
  const invalid = checkName("datacenter", command.datacenter);
  if (invalid) return invalid;
  const data = { datacenter: command.datacenter, displayName: command.displayName ?? null, region: command.region ?? null };
  if (state.status === "absent") return [{ type: "DatacenterRegistered", data }];
  if (state.displayName === data.displayName && state.region === data.region) return [];
  return [{ type: "DatacenterUpdated", data }];
}

export function decideRegisterRack(command: RegisterRack, state: DatacenterState): Result {
  const dc = requireDatacenter(state, command.datacenter);
  if (dc instanceof DomainError) return dc;
  const invalid = checkName("rack", command.rack) ?? (command.room ? checkName("room", command.room) : undefined);
  if (invalid) return invalid;
  const data = { datacenter: dc.datacenter, rack: command.rack, room: command.room ?? null };
  const existing = dc.racks.get(command.rack);
  if (!existing) return [{ type: "RackRegistered", data }];
  if (existing.room === data.room) return [];
  return [{ type: "RackUpdated", data }];
}

/** Another host of the datacenter already holds (or is about to hold) one of these identity values. */
function identityConflict(dc: PresentDatacenter, hostId: string, identity: HostIdentity): DomainError | undefined {
  for (const other of dc.hosts.values()) {
    if (other.hostId === hostId) continue;
    for (const held of heldIdentities(other)) {
      if (held.serial === identity.serial) {
        return new DomainError("serial_taken", `serial ${identity.serial} belongs to host ${other.name}`, {
          datacenter: dc.datacenter, serial: identity.serial, hostId: other.hostId, host: other.name,
        });
      }
      const mac = identity.macs.find((m) => held.macs.includes(m));
      if (mac !== undefined) {
        return new DomainError("mac_in_use", `MAC ${mac} belongs to host ${other.name}`, {
          datacenter: dc.datacenter, mac, hostId: other.hostId, host: other.name,
        });
      }
    }
  }
  return undefined;
}

function bmcSettingsOf(command: RegisterHost): BmcSettings | null {
  if (!command.bmc) return null;
  return {
    driver: command.bmc.driver,
    port: command.bmc.port ?? DEFAULT_BMC_PORTS[command.bmc.driver],
    username: command.bmc.username,
    credentialRef: command.bmc.credentialRef ?? null,
    ...(command.bmc.cipherSuite !== undefined ? { cipherSuite: command.bmc.cipherSuite } : {}),
  };
}

/** Attribute names that differ, for HostUpdated.changed (never values: a credential shows as "bmc.credential"). */
function changedAttributes(host: HostState, next: HostAttributes): string[] {
  const changed: string[] = [];
  for (const key of ["rack", "position", "vendor", "model", "role"] as const) if (host[key] !== next[key]) changed.push(key);
  const a = host.bmc;
  const b = next.bmc;
  if ((a === null) !== (b === null)) changed.push("bmc");
  else if (a && b) {
    if (a.driver !== b.driver) changed.push("bmc.driver");
    if (a.port !== b.port) changed.push("bmc.port");
    if (a.username !== b.username) changed.push("bmc.username");
    if (a.credentialRef !== b.credentialRef) changed.push("bmc.credential");
    if (a.cipherSuite !== b.cipherSuite) changed.push("bmc.cipherSuite");
  }
  return changed;
}

/**
 * Registers a host, or brings a registered one to the given description.
 * Attributes (rack, position, vendor/model, role, BMC driver/port/user/
 * credential) change at once. Identity (serial, MACs, BMC address) of a
 * registered host is trusted: a different one is only *proposed* and waits
 * for ApproveHostIdentityChange; going back to the current identity withdraws
 * the proposal; the same proposal again changes nothing.
 */
export function decideRegisterHost(command: RegisterHost, state: DatacenterState): Result {
  const dc = requireDatacenter(state, command.datacenter);
  if (dc instanceof DomainError) return dc;
  const invalid = checkName("host", command.name);
  if (invalid) return invalid;
  const macs = checkMacs(command.macs, command.name);
  if (macs instanceof DomainError) return macs;
  if (macs.length === 0) return new DomainError("invalid_mac", `host ${command.name} needs at least one MAC`, { host: command.name });
  const noRack = requireRack(dc, command.rack);
  if (noRack) return noRack;

  const attributes: HostAttributes = {
    rack: command.rack,
    position: command.position ?? null,
    vendor: command.vendor ?? null,
    model: command.model ?? null,
    role: command.role,
    bmc: bmcSettingsOf(command),
  };
  const identity: HostIdentity = { serial: command.serial, macs, bmcAddress: command.bmc?.address ?? null };
  const named = hostByName(dc, command.name);
  const host = dc.hosts.get(command.hostId);

  if (!host) {
    if (named) {
      return new DomainError("host_name_taken", `datacenter ${dc.datacenter} has a host named ${command.name} already (${named.hostId})`, {
        datacenter: dc.datacenter, host: command.name, hostId: named.hostId,
      });
    }
    const conflict = identityConflict(dc, command.hostId, identity);
    if (conflict) return conflict;
    return [{ type: "HostRegistered", data: { datacenter: dc.datacenter, hostId: command.hostId, name: command.name, ...attributes, ...identity } }];
  }

  if (host.name !== command.name) {
    return new DomainError("host_exists", `host ${command.hostId} is registered as ${host.name}`, { hostId: command.hostId, name: host.name });
  }
  const events: DatacenterEvent[] = [];
  const changed = changedAttributes(host, attributes);
  if (changed.length > 0) events.push({ type: "HostUpdated", data: { datacenter: dc.datacenter, hostId: host.hostId, ...attributes, changed } });

  const current: HostIdentity = { serial: host.serial, macs: host.macs, bmcAddress: host.bmcAddress };
  if (sameIdentity(current, identity)) {
    if (host.pending) events.push({ type: "HostIdentityChangeWithdrawn", data: { datacenter: dc.datacenter, hostId: host.hostId, changeId: host.pending.changeId } });
  } else if (!host.pending || !sameIdentity(host.pending.identity, identity)) {
    const conflict = identityConflict(dc, host.hostId, identity);
    if (conflict) return conflict;
    events.push({
      type: "HostIdentityChangeProposed",
      data: { datacenter: dc.datacenter, hostId: host.hostId, changeId: command.changeId, proposed: identity, current },
    });
  }
  return events;
}

export function decideApproveHostIdentityChange(command: ApproveHostIdentityChange, state: DatacenterState): Result {
  const dc = requireDatacenter(state, command.datacenter);
  if (dc instanceof DomainError) return dc;
  const host = dc.hosts.get(command.hostId);
  if (!host) return new DomainError("host_not_found", `host ${command.hostId} does not exist in ${dc.datacenter}`, { datacenter: dc.datacenter, hostId: command.hostId });
  if (command.changeId !== undefined && host.approvedChanges.includes(command.changeId)) return []; // approved already: a retry
  if (!host.pending) {
    return new DomainError("identity_change_not_found", `host ${host.name} has no identity change waiting for approval`, {
      hostId: host.hostId, ...(command.changeId !== undefined ? { changeId: command.changeId } : {}),
    });
  }
  if (command.changeId !== undefined && command.changeId !== host.pending.changeId) {
    // The operator reviewed another proposal than the one waiting now: they must look again.
    return new DomainError("identity_change_superseded", `host ${host.name} waits for change ${host.pending.changeId}, not ${command.changeId}`, {
      hostId: host.hostId, changeId: command.changeId, pendingChangeId: host.pending.changeId,
    });
  }
  // Checked again: the proposal was checked when made, and the pools only ever hold what is checked, but a decider never trusts the past blindly.
  const conflict = identityConflict(dc, host.hostId, host.pending.identity);
  if (conflict) return conflict;
  return [{ type: "HostIdentityChangeApproved", data: { datacenter: dc.datacenter, hostId: host.hostId, changeId: host.pending.changeId, identity: host.pending.identity } }];
}

export function decideRegisterSwitch(command: RegisterSwitch, state: DatacenterState): Result {
  const dc = requireDatacenter(state, command.datacenter);
  if (dc instanceof DomainError) return dc;
  const invalid = checkName("switch", command.switch);
  if (invalid) return invalid;
  if (command.rack) {
    const noRack = requireRack(dc, command.rack);
    if (noRack) return noRack;
  }
  if (hostByName(dc, command.switch)) {
    return new DomainError("device_name_taken", `datacenter ${dc.datacenter} has a host named ${command.switch}`, { datacenter: dc.datacenter, name: command.switch });
  }
  const data = {
    datacenter: dc.datacenter,
    switch: command.switch,
    rack: command.rack ?? null,
    position: command.position ?? null,
    vendor: command.vendor ?? null,
    model: command.model ?? null,
    managementAddress: command.managementAddress ?? null,
  };
  const existing = dc.switches.get(command.switch);
  if (!existing) return [{ type: "SwitchRegistered", data }];
  const same = (["rack", "position", "vendor", "model", "managementAddress"] as const).every((k) => existing[k] === data[k]);
  return same ? [] : [{ type: "SwitchUpdated", data }];
}

export function decideRegisterLink(command: RegisterLink, state: DatacenterState): Result {
  const dc = requireDatacenter(state, command.datacenter);
  if (dc instanceof DomainError) return dc;
  for (const end of [command.a, command.b]) {
    if (!dc.switches.has(end.device) && !hostByName(dc, end.device)) {
      return new DomainError("device_not_found", `datacenter ${dc.datacenter} has no host or switch ${end.device}`, { datacenter: dc.datacenter, device: end.device });
    }
  }
  if (endKey(command.a) === endKey(command.b)) {
    return new DomainError("invalid_link", `a link cannot connect ${endKey(command.a)} to itself`, { end: endKey(command.a) });
  }
  const key = linkKey(command.a, command.b);
  if (dc.links.has(key)) return [];
  for (const end of [command.a, command.b]) {
    for (const link of dc.links.values()) {
      if (endKey(link.a) === endKey(end) || endKey(link.b) === endKey(end)) {
        return new DomainError("port_in_use", `port ${endKey(end)} is cabled to ${endKey(endKey(link.a) === endKey(end) ? link.b : link.a)} already`, {
          datacenter: dc.datacenter, port: endKey(end),
        });
      }
    }
  }
  const [a, b] = orderEnds(command.a, command.b);
  return [{ type: "LinkRegistered", data: { datacenter: dc.datacenter, a, b } }];
}

function decide(command: DatacenterCommand, state: DatacenterState): Result {
  switch (command.type) {
    case "RegisterDatacenter":
      return decideRegisterDatacenter(command, state);
    case "RegisterRack":
      return decideRegisterRack(command, state);
    case "RegisterHost":
      return decideRegisterHost(command, state);
    case "ApproveHostIdentityChange":
      return decideApproveHostIdentityChange(command, state);
    case "RegisterSwitch":
      return decideRegisterSwitch(command, state);
    case "RegisterLink":
      return decideRegisterLink(command, state);
    default:
      return unreachable(command);
  }
}

function updateHost(state: DatacenterState, eventType: string, hostId: string, change: (host: HostState) => HostState): DatacenterState {
  const dc = present(state, eventType);
  const host = dc.hosts.get(hostId);
  if (!host) throw new Error(`${eventType} for unknown host ${hostId}`);
  return { ...dc, hosts: withEntry(dc.hosts, hostId, change(host)) };
}

function evolve(state: DatacenterState, event: DatacenterEvent): DatacenterState {
  switch (event.type) {
    case "DatacenterRegistered": {
      const { datacenter, displayName, region } = event.data;
      return { status: "present", datacenter, displayName, region, racks: new Map(), hosts: new Map(), switches: new Map(), links: new Map() };
    }
    case "DatacenterUpdated": {
      const dc = present(state, event.type);
      return { ...dc, displayName: event.data.displayName, region: event.data.region };
    }
    case "RackRegistered":
    case "RackUpdated": {
      const dc = present(state, event.type);
      return { ...dc, racks: withEntry(dc.racks, event.data.rack, { room: event.data.room }) };
    }
    case "HostRegistered": {
      const dc = present(state, event.type);
      const { datacenter: _dc, ...host } = event.data;
      return { ...dc, hosts: withEntry(dc.hosts, host.hostId, { ...host, pending: null, approvedChanges: [] }) };
    }
    case "HostUpdated": {
      const { datacenter: _dc, hostId, changed: _changed, ...attributes } = event.data;
      return updateHost(state, event.type, hostId, (host) => ({ ...host, ...attributes }));
    }
    case "HostIdentityChangeProposed":
      return updateHost(state, event.type, event.data.hostId, (host) => ({
        ...host,
        pending: { changeId: event.data.changeId, identity: event.data.proposed },
      }));
    case "HostIdentityChangeWithdrawn":
      return updateHost(state, event.type, event.data.hostId, (host) => ({ ...host, pending: null }));
    case "HostIdentityChangeApproved":
      return updateHost(state, event.type, event.data.hostId, (host) => ({
        ...host,
        ...event.data.identity,
        pending: null,
        approvedChanges: [...host.approvedChanges, event.data.changeId],
      }));
    case "SwitchRegistered":
    case "SwitchUpdated": {
      const dc = present(state, event.type);
      const { datacenter: _dc, switch: name, ...rest } = event.data;
      return { ...dc, switches: withEntry(dc.switches, name, { name, ...rest }) };
    }
    case "LinkRegistered": {
      const dc = present(state, event.type);
      return { ...dc, links: withEntry(dc.links, linkKey(event.data.a, event.data.b), { a: event.data.a, b: event.data.b }) };
    }
    default:
      return unreachable(event);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled datacenter message ${JSON.stringify(value)}`);
}

export const datacenterDecider: Decider<DatacenterCommand, DatacenterEvent, DatacenterState> = {
  initialState: initialDatacenterState,
  decide,
  evolve,
};
