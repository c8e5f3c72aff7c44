import type { PowerState } from "./power-sync.ts";
import type { HostLifecycleState, ProvisioningStage, WipeStage } from "./events.ts";

/** Who holds a host of the pool. */
export interface PoolAllocation {
  readonly hostId: string;
  readonly taskId: string;
  readonly tenantId: string;
  readonly projectId: string;
  readonly environmentId: string | null;
  readonly at: string;
}

/** The pool of one datacenter: allocated hosts by id; a host not in the map is free. */
export interface PoolState {
  readonly datacenter: string | null;
  readonly allocations: ReadonlyMap<string, PoolAllocation>;
}

export const initialPoolState: PoolState = { datacenter: null, allocations: new Map() };

/** The current (or, once ready/failed/releasing, the last) provisioning of a host. */
export interface HostProvisioning {
  readonly taskId: string;
  readonly datacenter: string;
  readonly tenantId: string;
  readonly projectId: string;
  readonly environmentId: string | null;
  readonly role: "controlplane" | "worker";
  readonly stage: ProvisioningStage;
  readonly startedAt: string;
  /** The one-time install token of the last netboot fetch: its digest and whether the installer used it. */
  readonly token: { readonly digest: string; readonly consumed: boolean } | null;
  readonly netbootFetchedAt: string | null;
  readonly installReportedAt: string | null;
  readonly failureReason: string | null;
}

/** The current (or last) wipe of a host's disks, by a release task. */
export interface HostWipe {
  readonly taskId: string;
  readonly stage: WipeStage;
  readonly requestedAt: string;
  /** The one-time wipe token of the last wipe netboot: its digest and whether the wiper used it. */
  readonly token: { readonly digest: string; readonly consumed: boolean } | null;
  readonly netbootFetchedAt: string | null;
  readonly reportedAt: string | null;
  readonly message: string | null;
  readonly devices: readonly string[];
  readonly bytesWiped: number | null;
}

/** A release task that failed before the host was wiped and returned. */
export interface HostReleaseFailure {
  readonly taskId: string;
  readonly reason: string;
  readonly at: string;
}

export interface HostState {
  /** Null until the host's first event. */
  readonly hostId: string | null;
  readonly datacenter: string | null;
  /** An empty stream is an available host. */
  readonly state: HostLifecycleState;
  readonly provisioning: HostProvisioning | null;
  /** The running release task, the last one that completed (so CompleteRelease again is a no-op), or the one that failed. */
  readonly releaseTaskId: string | null;
  /** Why the last release failed (state `release_failed`, or an available host whose wipe was abandoned); null once another release starts. */
  readonly releaseFailure?: HostReleaseFailure | null;
  /** The current or last wipe; a wipe is in progress while its stage is `requested` or `netboot-fetched` (see wipeInProgress). */
  readonly wipe: HostWipe | null;
  /** What the host boots from next, as far as the platform told its BMC. */
  readonly nextBoot: "pxe" | "disk" | null;
  readonly desiredPower: { readonly state: PowerState; readonly taskId: string; readonly at: string } | null;
  readonly observedPower: { readonly state: PowerState; readonly observedAt: string } | null;
}

export const initialHostState: HostState = {
  hostId: null,
  datacenter: null,
  state: "available",
  provisioning: null,
  releaseTaskId: null,
  releaseFailure: null,
  wipe: null,
  nextBoot: null,
  desiredPower: null,
  observedPower: null,
};

/** The task currently holding the host (provisioning it, or owning it once ready/failed); null when available, releasing or release_failed. */
export function holderTaskId(state: HostState): string | null {
  return state.state === "provisioning" || state.state === "ready" || state.state === "provision_failed" ? (state.provisioning?.taskId ?? null) : null;
}

/** The wipe waiting for its netboot or its report (the boot service serves the wipe image to the host then); null otherwise. */
export function wipeInProgress(state: HostState): HostWipe | null {
  const wipe = state.wipe ?? null; // (states stored before wipes existed have no field)
  return wipe && (wipe.stage === "requested" || wipe.stage === "netboot-fetched") ? wipe : null;
}
