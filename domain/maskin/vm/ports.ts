import { z } from "zod";
import type { Decider } from "../../shared/decider.ts";
import { DomainError } from "../../shared/errors.ts";
import { At, Id, unreachable } from "./common.ts";
import { VM_MAX_NICS } from "./mac.ts";

/**
 * SSH port pool of one hypervisor (stream `maskin-ports-<hostId>`). With
 * QEMU user-mode networking a guest's SSH is reached through a host port
 * forwarded to guest port 22; each (VM, NIC) gets its own port.
 *
 * - Allocation takes the lowest free port of the range: deterministic (the
 *   same history gives the same port), never hashed, so two VMs never clash;
 *   every allocation is decided on this one stream (expected version), so two
 *   racing VMs are decided one after the other.
 * - Idempotent per (VM, NIC): asking again answers nothing new (the port held).
 * - Released for all NICs of a VM at once (on delete or a failed create);
 *   a released port is free again (the lowest free is reused).
 * - The range defaults to 22000-22999; it can be changed while every held
 *   port lies inside the new range (`ssh_port_range_conflict` otherwise).
 */

export const MASKIN_PORTS_STREAM_PREFIX = "maskin-ports-";
export const portPoolStreamId = (hostId: string): string => `${MASKIN_PORTS_STREAM_PREFIX}${hostId}`;

export const DEFAULT_SSH_PORT_RANGE = Object.freeze({ first: 22000, last: 22999 });
const Port = z.int().min(1024).max(65535);
export const PortRangeSchema = z.strictObject({ first: Port, last: Port }).refine((r) => r.first <= r.last, { message: "first must be <= last", path: ["last"] });
export type PortRange = z.infer<typeof PortRangeSchema>;
const NicIndex = z.int().nonnegative().max(VM_MAX_NICS - 1);

export const ConfigureSshPortRangeSchema = z.strictObject({ type: z.literal("ConfigureSshPortRange"), hostId: Id, range: PortRangeSchema, at: At });
export const AllocateSshPortSchema = z.strictObject({ type: z.literal("AllocateSshPort"), hostId: Id, vmId: Id, nicIndex: NicIndex, taskId: Id, at: At });
export const ReleaseSshPortsSchema = z.strictObject({ type: z.literal("ReleaseSshPorts"), hostId: Id, vmId: Id, taskId: Id, at: At });

export const PortCommandSchema = z.discriminatedUnion("type", [ConfigureSshPortRangeSchema, AllocateSshPortSchema, ReleaseSshPortsSchema]);
export type PortCommand = z.infer<typeof PortCommandSchema>;
export type PortCommandInput = z.input<typeof PortCommandSchema>;

const S = z.string().min(1);
const Allocation = { hostId: S, vmId: S, nicIndex: z.int().nonnegative(), port: z.int(), taskId: S, at: S };
export const portEventSchemas = {
  SshPortRangeConfigured: { schemaVersion: 1, schema: z.object({ hostId: S, first: z.int(), last: z.int(), at: S }) },
  SshPortAllocated: { schemaVersion: 1, schema: z.object(Allocation) },
  SshPortReleased: { schemaVersion: 1, schema: z.object(Allocation) },
} as const;
type Schemas = typeof portEventSchemas;
export type PortEventType = keyof Schemas;
export type PortEvent = { [T in PortEventType]: { type: T; data: z.infer<Schemas[T]["schema"]> } }[PortEventType];
export type PortEventOf<T extends PortEventType> = Extract<PortEvent, { type: T }>;
export const PORT_EVENT_TYPES = Object.keys(portEventSchemas) as PortEventType[];
export function portEvent<T extends PortEventType>(type: T, data: PortEventOf<T>["data"]): PortEventOf<T> {
  return { type, data } as PortEventOf<T>;
}

export interface PortHolder {
  readonly vmId: string;
  readonly nicIndex: number;
}

export interface PortPoolState {
  readonly range: PortRange;
  /** Held ports: port -> (VM, NIC). */
  readonly held: ReadonlyMap<number, PortHolder>;
}
export const initialPortPoolState: PortPoolState = { range: DEFAULT_SSH_PORT_RANGE, held: new Map() };

/** The ports a VM holds, by NIC index (ascending). */
export function portsOfVm(state: PortPoolState, vmId: string): Array<{ nicIndex: number; port: number }> {
  return [...state.held.entries()]
    .filter(([, h]) => h.vmId === vmId)
    .map(([port, h]) => ({ nicIndex: h.nicIndex, port }))
    .sort((a, b) => a.nicIndex - b.nicIndex);
}

/** The lowest port of the range that nobody holds; null when the range is full. */
export function lowestFreePort(state: PortPoolState): number | null {
  for (let port = state.range.first; port <= state.range.last; port++) if (!state.held.has(port)) return port;
  return null;
}

function decide(command: PortCommand, state: PortPoolState): readonly PortEvent[] | DomainError {
  switch (command.type) {
    case "ConfigureSshPortRange": {
      const { first, last } = command.range;
      if (first === state.range.first && last === state.range.last) return [];
      const outside = [...state.held.keys()].filter((p) => p < first || p > last).sort((a, b) => a - b);
      if (outside.length > 0) {
        return new DomainError("ssh_port_range_conflict", `ports ${outside.join(", ")} are held outside ${first}-${last}; release them first`, { hostId: command.hostId, outside });
      }
      return [portEvent("SshPortRangeConfigured", { hostId: command.hostId, first, last, at: command.at })];
    }
    case "AllocateSshPort": {
      if (portsOfVm(state, command.vmId).some((p) => p.nicIndex === command.nicIndex)) return [];
      const port = lowestFreePort(state);
      if (port === null) {
        return new DomainError("ssh_ports_exhausted", `no free SSH port in ${state.range.first}-${state.range.last} on hypervisor ${command.hostId}`, {
          hostId: command.hostId,
          range: state.range,
        });
      }
      return [portEvent("SshPortAllocated", { hostId: command.hostId, vmId: command.vmId, nicIndex: command.nicIndex, port, taskId: command.taskId, at: command.at })];
    }
    case "ReleaseSshPorts":
      return portsOfVm(state, command.vmId).map(({ nicIndex, port }) =>
        portEvent("SshPortReleased", { hostId: command.hostId, vmId: command.vmId, nicIndex, port, taskId: command.taskId, at: command.at }),
      );
    default:
      return unreachable(command);
  }
}

function evolve(state: PortPoolState, event: PortEvent): PortPoolState {
  switch (event.type) {
    case "SshPortRangeConfigured":
      return { ...state, range: { first: event.data.first, last: event.data.last } };
    case "SshPortAllocated": {
      const held = new Map(state.held);
      held.set(event.data.port, { vmId: event.data.vmId, nicIndex: event.data.nicIndex });
      return { ...state, held };
    }
    case "SshPortReleased": {
      const held = new Map(state.held);
      held.delete(event.data.port);
      return { ...state, held };
    }
    default:
      return unreachable(event);
  }
}

export const portPoolDecider: Decider<PortCommand, PortEvent, PortPoolState> = { initialState: initialPortPoolState, decide, evolve };
