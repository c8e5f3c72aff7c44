import { z } from "zod";

/**
 * Power-state sync: the rule the periodic observer applies to what a host's
 * BMC says about power. Pure: the observer (a worker) reads the BMC, hands
 * each read to `observePower` with the time it was taken, records what comes
 * back, and keeps the returned state for the next read.
 *
 * - A change of observed power state is accepted only when two consecutive
 *   reads agree on it. One deviating answer (a BMC that says "off" once while
 *   the node runs) is never recorded, so nothing downstream can react to it.
 * - A failed read is never a change: it leaves the accepted state as it was,
 *   breaks a pending pair (the confirming read must come right after the
 *   first), and is only counted so the host can show its BMC as unreadable.
 * - Drift is the accepted state against the desired one (desired on,
 *   observed off = drift). It is computed from accepted states only, so a
 *   single read never shows as drift either.
 * - Nothing here acts. The result holds facts to record and drift to show;
 *   power actions come from tasks, which read the BMC themselves first.
 */

export const PowerStateSchema = z.enum(["on", "off"]);
export type PowerState = z.infer<typeof PowerStateSchema>;

/** Data of the `HostPowerStateObserved` event (schemaVersion 1). */
export const HostPowerStateObservedSchema = z.object({
  hostId: z.string().min(1),
  state: PowerStateSchema,
  /** When the confirming (second) read was taken. */
  observedAt: z.string().min(1),
  /** When the first of the two agreeing reads was taken: the change happened at or before it. */
  firstSeenAt: z.string().min(1),
  /** The state recorded before; null for a host's first observation. */
  previousState: PowerStateSchema.nullable(),
});
export type HostPowerStateObserved = z.infer<typeof HostPowerStateObservedSchema>;

/** One read of a BMC's power status; `at` is when it was taken (ISO 8601). */
export type PowerRead =
  | { readonly ok: true; readonly state: PowerState; readonly at: string }
  | { readonly ok: false; readonly error: string; readonly at: string };

export interface PowerDrift {
  readonly hostId: string;
  readonly desired: PowerState;
  readonly observed: PowerState;
  /** When this disagreement was first seen. */
  readonly since: string;
}

export interface PowerSyncState {
  readonly hostId: string;
  /** The last recorded state; null until two reads first agree. */
  readonly accepted: PowerState | null;
  readonly acceptedAt: string | null;
  /** A read that differs from `accepted`, waiting for the next read to confirm it. */
  readonly pending: { readonly state: PowerState; readonly firstSeenAt: string } | null;
  readonly consecutiveFailures: number;
  readonly lastFailure: { readonly at: string; readonly error: string } | null;
  readonly drift: PowerDrift | null;
}

export interface PowerSyncStep {
  readonly state: PowerSyncState;
  /** The event to record, when this read confirmed a change. */
  readonly observed: HostPowerStateObserved | null;
  /** Current drift against the desired state (null: none, or nothing desired or accepted yet). */
  readonly drift: PowerDrift | null;
  /** Whether drift started, ended or changed with this read. */
  readonly driftChanged: boolean;
}

/**
 * Where an observer starts: from the host's last recorded observation (so a
 * restarted observer does not record the same state again), or from nothing.
 */
export function initialPowerSync(hostId: string, recorded: Pick<HostPowerStateObserved, "state" | "observedAt"> | null = null): PowerSyncState {
  return {
    hostId,
    accepted: recorded?.state ?? null,
    acceptedAt: recorded?.observedAt ?? null,
    pending: null,
    consecutiveFailures: 0,
    lastFailure: null,
    drift: null,
  };
}

/** Applies one read. `desired` is the host's desired power state, null when nothing is desired. */
export function observePower(state: PowerSyncState, read: PowerRead, desired: PowerState | null): PowerSyncStep {
  let next: PowerSyncState;
  let observed: HostPowerStateObserved | null = null;

  if (!read.ok) {
    next = { ...state, pending: null, consecutiveFailures: state.consecutiveFailures + 1, lastFailure: { at: read.at, error: read.error } };
  } else if (read.state === state.accepted) {
    next = { ...state, pending: null, consecutiveFailures: 0 };
  } else if (state.pending?.state === read.state) {
    observed = {
      hostId: state.hostId,
      state: read.state,
      observedAt: read.at,
      firstSeenAt: state.pending.firstSeenAt,
      previousState: state.accepted,
    };
    next = { ...state, accepted: read.state, acceptedAt: read.at, pending: null, consecutiveFailures: 0 };
  } else {
    next = { ...state, pending: { state: read.state, firstSeenAt: read.at }, consecutiveFailures: 0 };
  }

  const drift = driftOf(next, desired, read.at);
  const driftChanged = (state.drift === null) !== (drift === null) || (drift !== null && drift !== state.drift);
  return { state: { ...next, drift }, observed, drift, driftChanged };
}

/** Desired vs accepted; keeps the earlier `since` while the disagreement stays the same. */
function driftOf(state: PowerSyncState, desired: PowerState | null, at: string): PowerDrift | null {
  if (desired === null || state.accepted === null || state.accepted === desired) return null;
  const before = state.drift;
  if (before && before.desired === desired && before.observed === state.accepted) return before;
  return { hostId: state.hostId, desired, observed: state.accepted, since: at };
}
