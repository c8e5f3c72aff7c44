import type { BmcSettings, HostAttributes, HostIdentity, HostRole, LinkEnd } from "./events.ts";

/** One registered host as the datacenter aggregate knows it. */
export interface HostState extends HostAttributes, HostIdentity {
  readonly hostId: string;
  readonly name: string;
  readonly role: HostRole;
  readonly bmc: BmcSettings | null;
  /** A proposed identity waiting for approval (see README: trusted hosts). */
  readonly pending: { readonly changeId: string; readonly identity: HostIdentity } | null;
  /** Changes approved so far: approving one of them again is a no-op. */
  readonly approvedChanges: readonly string[];
}

export interface SwitchState {
  readonly name: string;
  readonly rack: string | null;
  readonly position: number | null;
  readonly vendor: string | null;
  readonly model: string | null;
  readonly managementAddress: string | null;
}

export interface LinkState {
  readonly a: LinkEnd;
  readonly b: LinkEnd;
}

export type DatacenterState =
  | { readonly status: "absent" }
  | {
      readonly status: "present";
      readonly datacenter: string;
      readonly displayName: string | null;
      readonly region: string | null;
      readonly racks: ReadonlyMap<string, { readonly room: string | null }>;
      readonly hosts: ReadonlyMap<string, HostState>;
      readonly switches: ReadonlyMap<string, SwitchState>;
      /** Keyed by linkKey(a, b). */
      readonly links: ReadonlyMap<string, LinkState>;
    };

export type PresentDatacenter = Extract<DatacenterState, { status: "present" }>;

export const initialDatacenterState: DatacenterState = { status: "absent" };

export function present(state: DatacenterState, eventType: string): PresentDatacenter {
  if (state.status !== "present") throw new Error(`${eventType} applied to a datacenter that was never registered`);
  return state;
}

export function withEntry<K, V>(map: ReadonlyMap<K, V>, key: K, value: V): ReadonlyMap<K, V> {
  const copy = new Map(map);
  copy.set(key, value);
  return copy;
}

export function endKey(end: LinkEnd): string {
  return `${end.device}/${end.port}`;
}

/** Ends in a canonical order, so a-b and b-a are the same cable. */
export function orderEnds(a: LinkEnd, b: LinkEnd): [LinkEnd, LinkEnd] {
  return endKey(a) <= endKey(b) ? [a, b] : [b, a];
}

export function linkKey(a: LinkEnd, b: LinkEnd): string {
  const [first, second] = orderEnds(a, b);
  return `${endKey(first)}<->${endKey(second)}`;
}

export function hostByName(state: PresentDatacenter, name: string): HostState | undefined {
  for (const host of state.hosts.values()) if (host.name === name) return host;
  return undefined;
}

/** Every identity a host holds or may soon hold (its own and a pending one): what uniqueness is checked against. */
export function heldIdentities(host: HostState): HostIdentity[] {
  return host.pending ? [host, host.pending.identity] : [host];
}

export function sameIdentity(a: HostIdentity, b: HostIdentity): boolean {
  return a.serial === b.serial && a.bmcAddress === b.bmcAddress && a.macs.length === b.macs.length && a.macs.every((m, i) => m === b.macs[i]);
}
