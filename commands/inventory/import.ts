import { v7 as uuidv7 } from "uuid";
import type { LogPosition } from "../../adapters/eventstore/port.ts";
import type { SecretWriter } from "../../adapters/secrets/port.ts";
import { comparePositions } from "../../adapters/eventstore/position.ts";
import {
  bmcSecretSubject,
  datacenterStreamId,
  hostByName,
  MAC_REGISTRY_STREAM,
  normalizeMac,
  type DatacenterCommand,
  type DatacenterEvent,
  type DatacenterState,
  type HostIdentity,
  type MacRegistryEvent,
  type MacRegistryState,
  type ReserveHostMacs,
} from "../../domain/inventory/index.ts";
import { DomainError, isDomainError } from "../../domain/shared/errors.ts";
import type { CommandContext } from "../handler.ts";
import { loadStream, parseCommand, type CommandStore } from "../pipeline.ts";
import { DEFAULT_OVERCOMMIT, capacityDecider, portPoolDecider, type CapacityCommand, type Overcommit, type PortCommand } from "../../domain/maskin/vm/index.ts";
import { capacityHandler, executeCapacityCommand, executePortCommand, loadHypervisor, loadPortPool } from "../maskin/vm/index.ts";
import { decideBatch, executeBatch } from "./batch.ts";
import type { DocDatacenter, DocHost, InventoryDocument } from "./document.ts";
import { datacenterHandler, macRegistryHandler } from "./handlers.ts";

/**
 * Importing an inventory file: diff it against the current inventory and
 * apply the difference as commands.
 *
 * 1. Checks that need only the document (names twice, a MAC on two hosts, a
 *    passwordFile the client did not resolve).
 * 2. Plans: every datacenter's commands are decided in memory against its
 *    stream (the deciders are pure), MACs against the platform registry.
 *    Every refusal becomes an error with the document path it came from;
 *    any error and nothing is written (not even a secret).
 * 3. Unless dryRun: passwords go into the secret store (a password already
 *    stored for that host is found again, not stored twice), then per
 *    datacenter: reserve the MACs it will hold in the registry, append the
 *    datacenter's events in one append (all or nothing), and set the
 *    registry to exactly what the datacenter now holds (which also undoes
 *    the reservation when the append was refused).
 *
 * 4. Hosts with `role: hypervisor` are registered with Maskin's capacity
 *    aggregate (`RegisterHypervisor`: their capacity and the datacenter's
 *    overcommit ratios), after their datacenter's append; a changed capacity
 *    or ratio is recorded as `HypervisorCapacityChanged` and reported as a
 *    change `capacity` of the host. A hypervisor's `sshPortRange` sets the
 *    range its VMs' SSH port forwards come from (ConfigureSshPortRange on
 *    `maskin-ports-<hostId>`; refused while a held port lies outside it), for
 *    hypervisors that share an address (a lab, one machine) or a firewall plan. A host that stops being a hypervisor in
 *    the file keeps its capacity record (its VMs are still there): cordon
 *    and drain it first.
 *
 * Importing the same file again decides no events: the report says
 * `unchanged` (or `pending-approval`) for every item and nothing is appended.
 */

export type ItemKind = "datacenter" | "rack" | "host" | "switch" | "link";
export type ItemOutcome = "created" | "updated" | "unchanged" | "pending-approval";

export interface ReportItem {
  readonly kind: ItemKind;
  readonly datacenter: string;
  readonly name: string;
  /** Host id (hosts only). */
  readonly id?: string;
  /** Where in the document. */
  readonly path: string;
  readonly outcome: ItemOutcome;
  /** What changed (field names, never secret values), e.g. ["rack", "bmc.credential"]. */
  readonly changes: readonly string[];
  /** Hosts waiting for approval: the change to approve and the identity fields it changes. */
  readonly pendingChange?: { readonly changeId: string; readonly fields: readonly string[] };
}

export interface ImportReport {
  readonly dryRun: boolean;
  readonly items: readonly ReportItem[];
  readonly summary: Readonly<Record<ItemOutcome, number>>;
  /** Last log position written (null: nothing written, or a dry run). */
  readonly position: LogPosition | null;
}

export interface ImportError {
  readonly path: string;
  readonly message: string;
  readonly code?: string;
}

/** The document cannot be imported as it is; every error is listed with its path. Nothing was written. */
export class InventoryImportError extends Error {
  override readonly name = "InventoryImportError";
  readonly code = "inventory_invalid";
  constructor(readonly errors: readonly ImportError[]) {
    super(`the inventory cannot be imported: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`);
  }
}

export interface ImportDeps {
  readonly store: CommandStore;
  /** Null when the server has no secret key: a document with passwords is refused. */
  readonly secrets: SecretWriter | null;
  /** Ids of new hosts and identity changes (default UUIDv7). */
  readonly newId?: () => string;
}

/** A reference that stands for "a new secret would be stored" in a plan. */
const NEW_SECRET = "secret:00000000-0000-0000-0000-000000000000" as const;

interface PlannedCommand {
  readonly path: string;
  readonly kind: ItemKind;
  readonly name: string;
  readonly command: DatacenterCommand;
  /** Hosts: the password to store (only while planning for real). */
  readonly password?: { value: string; subject: string };
}

export async function importInventory(
  deps: ImportDeps,
  document: InventoryDocument,
  options: { dryRun: boolean },
  context: CommandContext,
): Promise<ImportReport> {
  const newId = deps.newId ?? uuidv7;
  const documentErrors = checkDocument(document, deps.secrets !== null);
  if (documentErrors.length > 0) throw new InventoryImportError(documentErrors);

  // ---- plan: decide everything in memory
  const registryLoaded = await loadStream<MacRegistryEvent>(deps.store, MAC_REGISTRY_STREAM, macRegistryHandler.eventSchemas);
  let registry = registryLoaded.events.reduce(macRegistryHandler.decider.evolve, macRegistryHandler.decider.initialState);
  const errors: ImportError[] = [];
  const items: ReportItem[] = [];
  const plans: Array<{ datacenter: string; commands: PlannedCommand[]; hostIds: string[]; changed: boolean }> = [];
  const hypervisors: Array<{ datacenter: string; command: CapacityCommand }> = [];
  const portRanges: Array<{ datacenter: string; command: PortCommand }> = [];
  const at = (context.occurredAt ?? new Date()).toISOString();

  for (const [d, dc] of document.datacenters.entries()) {
    const streamId = datacenterStreamId(dc.name);
    const loaded = await loadStream<DatacenterEvent>(deps.store, streamId, datacenterHandler.eventSchemas);
    const before = loaded.events.reduce(datacenterHandler.decider.evolve, datacenterHandler.decider.initialState);
    const commands = await planDatacenter(deps, `datacenters[${d}]`, dc, before, newId);
    const outcome = await decideBatch(deps.store, datacenterHandler, streamId, commands.map((c) => c.command), loaded);
    const hostIds: string[] = [];
    const decidedItems: Array<{ planned: PlannedCommand; item: ReportItem }> = [];
    outcome.decided.forEach((decided, i) => {
      const planned = commands[i]!;
      if (isDomainError(decided)) {
        errors.push(errorAt(planned.path, decided));
        return;
      }
      decidedItems.push({ planned, item: reportItem(planned, decided, outcome.state) });
      if (planned.command.type === "RegisterHost") hostIds.push(planned.command.hostId);
    });
    for (const { planned, item } of decidedItems) {
      const command = planned.command.type === "RegisterHost" ? hypervisorCommand(dc, hostOf(dc, planned), planned.command.hostId, at) : null;
      if (!command) {
        items.push(item);
        continue;
      }
      const decided = capacityDecider.decide(command, (await loadHypervisor(deps.store, command.hostId)).state);
      if (isDomainError(decided)) {
        errors.push(errorAt(planned.path, decided));
        continue;
      }
      hypervisors.push({ datacenter: dc.name, command });
      let changed = decided.length > 0;
      const range = hostOf(dc, planned)?.sshPortRange;
      if (range) {
        const portCommand: PortCommand = { type: "ConfigureSshPortRange", hostId: command.hostId, range: { first: range.first, last: range.last }, at };
        const ports = portPoolDecider.decide(portCommand, (await loadPortPool(deps.store, command.hostId)).state);
        if (isDomainError(ports)) {
          errors.push(errorAt(planned.path, ports));
          continue;
        }
        portRanges.push({ datacenter: dc.name, command: portCommand });
        changed ||= ports.length > 0;
      }
      items.push(withCapacityChange(item, changed));
    }
    // MACs across datacenters: what each host will hold, against the registry (and the other datacenters of this file).
    for (const planned of commands) {
      if (planned.command.type !== "RegisterHost" || outcome.state.status !== "present") continue;
      const host = outcome.state.hosts.get(planned.command.hostId);
      if (!host) continue;
      const reserve: ReserveHostMacs = { type: "ReserveHostMacs", hostId: host.hostId, datacenter: dc.name, macs: heldMacs(host) };
      const decided = macRegistryHandler.decider.decide(reserve, registry);
      if (isDomainError(decided)) errors.push(errorAt(planned.path, decided));
      else registry = decided.reduce(macRegistryHandler.decider.evolve, registry);
    }
    plans.push({ datacenter: dc.name, commands, hostIds, changed: outcome.events.length > 0 });
  }
  if (errors.length > 0) throw new InventoryImportError(errors);

  const summary = { created: 0, updated: 0, unchanged: 0, "pending-approval": 0 };
  for (const item of items) summary[item.outcome]++;
  if (options.dryRun) return { dryRun: true, items, summary, position: null };

  // ---- apply
  let position: LogPosition | null = null;
  const later = (p: LogPosition | null) => {
    if (p && (!position || comparePositions(p, position) > 0)) position = p;
  };
  for (const plan of plans) {
    if (!plan.changed) continue;
    const commands: DatacenterCommand[] = [];
    for (const planned of plan.commands) {
      if (planned.command.type === "RegisterHost" && planned.password && planned.command.bmc) {
        const credentialRef = await deps.secrets!.put(planned.password.value, planned.password.subject);
        commands.push({ ...planned.command, bmc: { ...planned.command.bmc, credentialRef } });
      } else commands.push(planned.command);
    }
    const dcContext = { ...context, datacenter: plan.datacenter };
    // Reserve first what the hosts will hold on top of what they hold, so no other import can take a MAC in between.
    const registryNow = await loadRegistry(deps.store);
    const dcNow = await loadDatacenter(deps.store, plan.datacenter);
    const planned = await decideBatch(deps.store, datacenterHandler, datacenterStreamId(plan.datacenter), commands);
    const widen: ReserveHostMacs[] = plan.hostIds.map((hostId) => ({
      type: "ReserveHostMacs", hostId, datacenter: plan.datacenter,
      macs: union(registryNow.held.get(hostId) ?? [], hostMacs(planned.state, hostId), hostMacs(dcNow, hostId)),
    }));
    later((await executeBatch(deps.store, macRegistryHandler, MAC_REGISTRY_STREAM, widen, dcContext)).position);
    try {
      later((await executeBatch(deps.store, datacenterHandler, datacenterStreamId(plan.datacenter), commands, dcContext)).position);
    } finally {
      later(await syncRegistry(deps.store, plan.datacenter, plan.hostIds, dcContext));
    }
  }
  for (const { datacenter, command } of hypervisors) {
    const result = await executeCapacityCommand(deps.store, command, { ...context, datacenter });
    if (result.events.length > 0) later(result.position);
  }
  for (const { datacenter, command } of portRanges) {
    const result = await executePortCommand(deps.store, command, { ...context, datacenter });
    if (result.events.length > 0) later(result.position);
  }
  return { dryRun: false, items, summary, position };
}

/** Sets the registry to exactly the MACs each host holds in its datacenter (its own and a pending change's). */
export async function syncRegistry(store: CommandStore, datacenter: string, hostIds: readonly string[], context: CommandContext): Promise<LogPosition | null> {
  const state = await loadDatacenter(store, datacenter);
  const commands: ReserveHostMacs[] = hostIds.map((hostId) => ({ type: "ReserveHostMacs", hostId, datacenter, macs: hostMacs(state, hostId) }));
  const result = await executeBatch(store, macRegistryHandler, MAC_REGISTRY_STREAM, commands, context);
  return result.appended > 0 ? result.position : null;
}

export async function loadDatacenter(store: CommandStore, datacenter: string): Promise<DatacenterState> {
  const loaded = await loadStream<DatacenterEvent>(store, datacenterStreamId(datacenter), datacenterHandler.eventSchemas);
  return loaded.events.reduce(datacenterHandler.decider.evolve, datacenterHandler.decider.initialState);
}

async function loadRegistry(store: CommandStore): Promise<MacRegistryState> {
  const loaded = await loadStream<MacRegistryEvent>(store, MAC_REGISTRY_STREAM, macRegistryHandler.eventSchemas);
  return loaded.events.reduce(macRegistryHandler.decider.evolve, macRegistryHandler.decider.initialState);
}

function heldMacs(host: { macs: readonly string[]; pending: { identity: HostIdentity } | null }): string[] {
  return union(host.macs, host.pending?.identity.macs ?? []);
}

function hostMacs(state: DatacenterState, hostId: string): string[] {
  if (state.status !== "present") return [];
  const host = state.hosts.get(hostId);
  return host ? heldMacs(host) : [];
}

function union(...lists: ReadonlyArray<readonly string[]>): string[] {
  return [...new Set(lists.flat())].sort();
}

async function planDatacenter(
  deps: ImportDeps,
  path: string,
  dc: InventoryDocument["datacenters"][number],
  state: DatacenterState,
  newId: () => string,
): Promise<PlannedCommand[]> {
  const out: PlannedCommand[] = [];
  const push = (planned: Omit<PlannedCommand, "command"> & { command: unknown }) =>
    out.push({ ...planned, command: parseCommand(datacenterHandler, planned.command) });
  push({
    path, kind: "datacenter", name: dc.name,
    command: { type: "RegisterDatacenter", datacenter: dc.name, displayName: dc.displayName ?? null, region: dc.region ?? null },
  });
  for (const [r, rack] of (dc.racks ?? []).entries()) {
    push({ path: `${path}.racks[${r}]`, kind: "rack", name: rack.name, command: { type: "RegisterRack", datacenter: dc.name, rack: rack.name, room: rack.room ?? null } });
  }
  for (const [s, sw] of (dc.switches ?? []).entries()) {
    push({
      path: `${path}.switches[${s}]`, kind: "switch", name: sw.name,
      command: {
        type: "RegisterSwitch", datacenter: dc.name, switch: sw.name, rack: sw.rack ?? null, position: sw.position ?? null,
        vendor: sw.vendor ?? null, model: sw.model ?? null, managementAddress: sw.managementAddress ?? null,
      },
    });
  }
  for (const [r, rack] of (dc.racks ?? []).entries()) {
    for (const [h, host] of (rack.hosts ?? []).entries()) {
      const hostPath = `${path}.racks[${r}].hosts[${h}]`;
      const existing = state.status === "present" ? hostByName(state, host.name) : undefined;
      const hostId = existing?.hostId ?? newId();
      const subject = bmcSecretSubject(dc.name, host.name);
      let credentialRef: string | null = existing?.bmc?.credentialRef ?? null;
      if (host.bmc?.password !== undefined) credentialRef = (await deps.secrets!.find(host.bmc.password, subject)) ?? NEW_SECRET;
      push({
        path: hostPath, kind: "host", name: host.name,
        ...(host.bmc?.password !== undefined && credentialRef === NEW_SECRET ? { password: { value: host.bmc.password, subject } } : {}),
        command: hostCommand(dc.name, rack.name, hostId, host, credentialRef, newId()),
      });
    }
  }
  for (const [l, link] of (dc.links ?? []).entries()) {
    push({ path: `${path}.links[${l}]`, kind: "link", name: `${link.a.device}/${link.a.port}<->${link.b.device}/${link.b.port}`, command: { type: "RegisterLink", datacenter: dc.name, a: link.a, b: link.b } });
  }
  return out;
}

function hostCommand(datacenter: string, rack: string, hostId: string, host: DocHost, credentialRef: string | null, changeId: string) {
  return {
    type: "RegisterHost",
    datacenter,
    hostId,
    name: host.name,
    rack,
    position: host.position ?? null,
    serial: host.serial,
    vendor: host.vendor ?? null,
    model: host.model ?? null,
    macs: host.macs,
    role: host.role ?? "bare-metal",
    bmc: host.bmc
      ? {
          driver: host.bmc.driver,
          address: host.bmc.address,
          ...(host.bmc.port !== undefined ? { port: host.bmc.port } : {}),
          username: host.bmc.username,
          credentialRef,
          ...(host.bmc.cipherSuite !== undefined ? { cipherSuite: host.bmc.cipherSuite } : {}),
        }
      : null,
    changeId,
  };
}

/** The document's host behind a planned RegisterHost (by name: names are unique in a datacenter). */
function hostOf(dc: DocDatacenter, planned: PlannedCommand): DocHost | undefined {
  for (const rack of dc.racks ?? []) for (const host of rack.hosts ?? []) if (host.name === planned.name) return host;
  return undefined;
}

/** The datacenter's overcommit ratios, each defaulted on its own. */
export function overcommitOf(dc: Pick<DocDatacenter, "overcommit">): Overcommit {
  return { ...DEFAULT_OVERCOMMIT, ...dc.overcommit };
}

/** RegisterHypervisor for a hypervisor host of the document (null for other hosts, or one without capacity). */
function hypervisorCommand(dc: DocDatacenter, host: DocHost | undefined, hostId: string, at: string): CapacityCommand | null {
  if (!host || host.role !== "hypervisor" || !host.capacity) return null;
  return parseCommand(capacityHandler, {
    type: "RegisterHypervisor",
    hostId,
    name: host.name,
    datacenter: dc.name,
    capacity: { vcpus: host.capacity.vcpus, memoryMiB: host.capacity.memoryMiB, diskGiB: host.capacity.diskGiB },
    overcommit: overcommitOf(dc),
    at,
  });
}

/** A host item whose hypervisor registration decides events: at least `updated`, with the change `capacity`. */
function withCapacityChange(item: ReportItem, changed: boolean): ReportItem {
  if (!changed || item.outcome === "created") return item;
  return { ...item, outcome: item.outcome === "unchanged" ? "updated" : item.outcome, changes: [...item.changes, "capacity"] };
}

function reportItem(planned: PlannedCommand, events: readonly DatacenterEvent[], state: DatacenterState): ReportItem {
  const base = {
    kind: planned.kind,
    datacenter: planned.command.datacenter,
    name: planned.name,
    ...(planned.command.type === "RegisterHost" ? { id: planned.command.hostId } : {}),
    path: planned.path,
  };
  const changes: string[] = [];
  let outcome: ItemOutcome = "unchanged";
  for (const event of events) {
    if (event.type.endsWith("Registered")) outcome = "created";
    else if (event.type === "HostUpdated") {
      changes.push(...event.data.changed);
      outcome = "updated";
    } else if (event.type === "HostIdentityChangeWithdrawn") {
      changes.push("identity change withdrawn");
      outcome = "updated";
    } else if (event.type.endsWith("Updated")) {
      changes.push(...updatedFields(event));
      outcome = "updated";
    }
  }
  if (planned.command.type === "RegisterHost" && state.status === "present") {
    const host = state.hosts.get(planned.command.hostId);
    if (host?.pending) {
      return { ...base, outcome: "pending-approval", changes, pendingChange: { changeId: host.pending.changeId, fields: identityFields(host, host.pending.identity) } };
    }
  }
  return { ...base, outcome, changes };
}

function updatedFields(event: DatacenterEvent): string[] {
  switch (event.type) {
    case "DatacenterUpdated":
      return ["displayName", "region"];
    case "RackUpdated":
      return ["room"];
    case "SwitchUpdated":
      return ["rack", "position", "vendor", "model", "managementAddress"];
    default:
      return [];
  }
}

function identityFields(current: HostIdentity, proposed: HostIdentity): string[] {
  const fields: string[] = [];
  if (current.serial !== proposed.serial) fields.push("serial");
  if (current.macs.join() !== proposed.macs.join()) fields.push("macs");
  if (current.bmcAddress !== proposed.bmcAddress) fields.push("bmc.address");
  return fields;
}

function errorAt(path: string, error: DomainError): ImportError {
  const field = FIELD_OF_CODE[error.code];
  return { path: field ? `${path}.${field}` : path, message: error.message, code: error.code };
}

/** Which field of the item a refusal is about, to point the error at it. */
const FIELD_OF_CODE: Readonly<Record<string, string>> = {
  serial_taken: "serial",
  mac_in_use: "macs",
  duplicate_mac: "macs",
  invalid_mac: "macs",
  rack_not_found: "rack",
  host_name_taken: "name",
  hypervisor_datacenter_mismatch: "capacity",
  ssh_port_range_conflict: "sshPortRange",
  device_name_taken: "name",
};

/** Rules the document breaks by itself, before anything is read. */
export function checkDocument(document: InventoryDocument, hasSecretStore: boolean): ImportError[] {
  const errors: ImportError[] = [];
  const dcNames = new Map<string, string>();
  const macs = new Map<string, string>();
  for (const [d, dc] of document.datacenters.entries()) {
    const path = `datacenters[${d}]`;
    duplicate(errors, dcNames, dc.name, `${path}.name`, "datacenter");
    const racks = new Map<string, string>();
    const devices = new Map<string, string>();
    const serials = new Map<string, string>();
    for (const [r, rack] of (dc.racks ?? []).entries()) {
      duplicate(errors, racks, rack.name, `${path}.racks[${r}].name`, "rack");
      for (const [h, host] of (rack.hosts ?? []).entries()) {
        const hostPath = `${path}.racks[${r}].hosts[${h}]`;
        duplicate(errors, devices, host.name, `${hostPath}.name`, "host or switch");
        duplicate(errors, serials, host.serial, `${hostPath}.serial`, "serial");
        for (const [m, raw] of host.macs.entries()) {
          const mac = normalizeMac(raw);
          if (mac === undefined) errors.push({ path: `${hostPath}.macs[${m}]`, message: `${JSON.stringify(raw)} is not a unicast MAC address` });
          else duplicate(errors, macs, mac, `${hostPath}.macs[${m}]`, "MAC");
        }
        if (host.bmc?.passwordFile !== undefined) {
          errors.push({
            path: `${hostPath}.bmc.passwordFile`,
            message: "the server does not read files: send the password itself (`dvce inventory import` reads passwordFile for you)",
          });
        }
        if (host.bmc?.password !== undefined && !hasSecretStore) {
          errors.push({ path: `${hostPath}.bmc.password`, message: "this server has no secret store (set DV_SECRET_KEY or DV_SECRET_KEY_FILE), so it cannot keep passwords" });
        }
      }
    }
    for (const [s, sw] of (dc.switches ?? []).entries()) duplicate(errors, devices, sw.name, `${path}.switches[${s}].name`, "host or switch");
  }
  return errors;
}

function duplicate(errors: ImportError[], seen: Map<string, string>, value: string, path: string, what: string): void {
  const first = seen.get(value);
  if (first !== undefined) errors.push({ path, message: `${what} ${JSON.stringify(value)} appears twice (first at ${first})` });
  else seen.set(value, path);
}

/**
 * An operator approves a host's pending identity change; the MACs the old
 * identity no longer needs are released in the registry.
 */
export async function approveHostIdentityChange(
  store: CommandStore,
  input: { datacenter: string; hostId: string; changeId?: string },
  context: CommandContext,
): Promise<{ position: LogPosition | null; approved: boolean }> {
  const command = parseCommand(datacenterHandler, { type: "ApproveHostIdentityChange", ...input });
  const dcContext = { ...context, datacenter: input.datacenter };
  const result = await executeBatch(store, datacenterHandler, datacenterStreamId(input.datacenter), [command], dcContext);
  const released = await syncRegistry(store, input.datacenter, [input.hostId], dcContext);
  const position = released ?? result.position;
  return { position, approved: result.appended > 0 };
}
