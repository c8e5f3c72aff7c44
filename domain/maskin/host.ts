import type { Decider } from "../shared/decider.ts";
import { DomainError } from "../shared/errors.ts";
import type { HostCommand, HostCommandOf } from "./commands.ts";
import { hostEvent, type HostEvent } from "./events.ts";
import { holderTaskId, initialHostState, wipeInProgress, type HostProvisioning, type HostState, type HostWipe } from "./state.ts";

/**
 * One host's lifecycle (stream `maskin-host-<hostId>`), see README:
 * `available` → `provisioning` → `ready` → `releasing` → `available`;
 * `provisioning` can end in `provision_failed` (then only release);
 * `releasing` can end in `release_failed` (FailRelease: the release task
 * failed or was cancelled before the wipe and return), from which only a
 * release by another task leads on (never provisioning, never the pool).
 *
 * Error codes: `host_not_available` (StartProvisioning of a host another task
 * holds, or that is releasing/failed), `host_task_mismatch` (a command naming
 * another task than the host's current one), `host_not_provisioning`,
 * `netboot_not_expected` (a netboot fetch outside provisioning or after the
 * install reported: the boot service then serves boot-from-disk),
 * `install_token_invalid`, `provisioning_not_installed`,
 * `host_not_releasable` (release of a host being provisioned, or released by
 * another task), `host_not_releasing`, `wipe_not_done` (CompleteRelease
 * before this release's wipe reported success), `wipe_token_invalid`.
 *
 * Release wipes (README "Release and wipe"): RequestWipe (the release task,
 * host releasing for it or available) → RecordWipeNetbootFetched (the boot
 * service served the wipe image, one-time token digest) →
 * RecordWipeReported (the wiper's callback, consumes the token). An
 * available host with a wipe in progress is not available to provisioning.
 *
 * A command whose effect already holds (the same task again) decides no
 * events, so a saga step or a boot-service request may be repeated safely.
 */

type Result = readonly HostEvent[] | DomainError;

function notAvailable(command: { hostId: string }, state: HostState): DomainError {
  return new DomainError("host_not_available", `host ${command.hostId} is ${state.state}`, {
    hostId: command.hostId,
    state: state.state,
    holderTaskId: holderTaskId(state) ?? wipeInProgress(state)?.taskId ?? state.releaseTaskId,
  });
}

function taskMismatch(command: { hostId: string; taskId: string }, expected: string): DomainError {
  return new DomainError("host_task_mismatch", `host ${command.hostId} belongs to task ${expected}, not ${command.taskId}`, {
    hostId: command.hostId,
    taskId: command.taskId,
    holderTaskId: expected,
  });
}

function notProvisioning(command: { hostId: string }, state: HostState): DomainError {
  return new DomainError("host_not_provisioning", `host ${command.hostId} is ${state.state}, not provisioning`, {
    hostId: command.hostId,
    state: state.state,
  });
}

/** The current provisioning when the host is being provisioned by this task; an error otherwise. */
function ownProvisioning(command: { hostId: string; taskId: string }, state: HostState): HostProvisioning | DomainError {
  const p = state.provisioning;
  if (state.state !== "provisioning" || !p) return notProvisioning(command, state);
  if (p.taskId !== command.taskId) return taskMismatch(command, p.taskId);
  return p;
}

function decideStartProvisioning(command: HostCommandOf<"StartProvisioning">, state: HostState): Result {
  if (state.state === "available" && !wipeInProgress(state)) {
    const { type: _type, ...data } = command;
    return [hostEvent("HostProvisioningStarted", data)];
  }
  if (holderTaskId(state) === command.taskId) return [];
  return notAvailable(command, state);
}

function decideRecordNetbootRequested(command: HostCommandOf<"RecordNetbootRequested">, state: HostState): Result {
  if (state.state === "ready" && state.provisioning?.taskId === command.taskId) return [];
  const p = ownProvisioning(command, state);
  if (p instanceof DomainError) return p;
  if (p.stage !== "allocated") return []; // already requested (or the host has netbooted since)
  return [hostEvent("HostNetbootRequested", { hostId: command.hostId, datacenter: p.datacenter, taskId: p.taskId, at: command.at })];
}

function decideRecordNetbootFetched(command: HostCommandOf<"RecordNetbootFetched">, state: HostState): Result {
  const p = state.provisioning;
  if (state.state !== "provisioning" || !p || p.stage === "installed" || p.stage === "install-failed") {
    return new DomainError("netboot_not_expected", `host ${command.hostId} is not waiting for a netboot`, {
      hostId: command.hostId,
      state: state.state,
      stage: state.state === "provisioning" ? (p?.stage ?? null) : null,
    });
  }
  if (p.stage === "netboot-fetched" && p.token?.digest === command.tokenDigest) return [];
  return [
    hostEvent("HostNetbootFetched", {
      hostId: command.hostId,
      datacenter: p.datacenter,
      taskId: p.taskId,
      mac: command.mac,
      tokenDigest: command.tokenDigest,
      at: command.at,
    }),
  ];
}

function decideRecordInstallReported(command: HostCommandOf<"RecordInstallReported">, state: HostState): Result {
  const p = state.provisioning;
  const valid = state.state === "provisioning" && p !== null && p.stage === "netboot-fetched" && p.token !== null && !p.token.consumed && p.token.digest === command.tokenDigest;
  if (!valid || !p) {
    return new DomainError("install_token_invalid", `the install token is not valid for host ${command.hostId}`, { hostId: command.hostId });
  }
  return [
    hostEvent("HostInstallReported", {
      hostId: command.hostId,
      datacenter: p.datacenter,
      taskId: p.taskId,
      outcome: command.outcome,
      message: command.message,
      at: command.at,
    }),
  ];
}

function decideCompleteProvisioning(command: HostCommandOf<"CompleteProvisioning">, state: HostState): Result {
  if (state.state === "ready" && state.provisioning?.taskId === command.taskId) return [];
  const p = ownProvisioning(command, state);
  if (p instanceof DomainError) return p;
  if (p.stage !== "installed") {
    return new DomainError("provisioning_not_installed", `host ${command.hostId} is at stage ${p.stage}, not installed`, {
      hostId: command.hostId,
      stage: p.stage,
    });
  }
  return [hostEvent("HostProvisioned", { hostId: command.hostId, datacenter: p.datacenter, taskId: p.taskId, nextBoot: "disk", at: command.at })];
}

function decideFailProvisioning(command: HostCommandOf<"FailProvisioning">, state: HostState): Result {
  if (state.state === "provision_failed" && state.provisioning?.taskId === command.taskId) return [];
  const p = ownProvisioning(command, state);
  if (p instanceof DomainError) return p;
  return [
    hostEvent("HostProvisioningFailed", {
      hostId: command.hostId,
      datacenter: p.datacenter,
      taskId: p.taskId,
      stage: p.stage,
      reason: command.reason,
      at: command.at,
    }),
  ];
}

function decideStartRelease(command: HostCommandOf<"StartRelease">, state: HostState): Result {
  const started = (p: HostProvisioning | null, provisionedByTaskId: string): Result => [
    hostEvent("HostReleaseStarted", {
      hostId: command.hostId,
      datacenter: p?.datacenter ?? state.datacenter ?? "",
      taskId: command.taskId,
      provisionedByTaskId,
      at: command.at,
    }),
  ];
  switch (state.state) {
    case "ready":
    case "provision_failed":
      return started(state.provisioning, state.provisioning!.taskId);
    case "releasing": {
      if (state.releaseTaskId === command.taskId) return [];
      // The running release's wipe failed (its task failed with the wiper's words): another release may take over.
      const p = state.provisioning;
      if (p && state.wipe?.taskId === state.releaseTaskId && state.wipe.stage === "wipe-failed") return started(p, p.taskId);
      break;
    }
    case "release_failed":
      // Another task takes over the failed release (and wipes the host all over again). The failed task itself
      // runs no more steps: its StartRelease is refused so nothing mistakes the old task for a running release.
      if (state.releaseTaskId !== command.taskId) return started(state.provisioning, state.provisioning?.taskId ?? state.releaseTaskId ?? command.taskId);
      break;
    case "available":
      // Nothing to release on the host (never provisioned, or released already):
      // the release task still powers off, wipes and returns the host to the pool.
      return [];
    case "provisioning":
      break;
  }
  return new DomainError("host_not_releasable", `host ${command.hostId} is ${state.state}`, {
    hostId: command.hostId,
    state: state.state,
    holderTaskId: state.state === "releasing" || state.state === "release_failed" ? state.releaseTaskId : holderTaskId(state),
  });
}

function decideCompleteRelease(command: HostCommandOf<"CompleteRelease">, state: HostState): Result {
  if (state.state === "available") return [];
  if (state.state !== "releasing") {
    return new DomainError("host_not_releasing", `host ${command.hostId} is ${state.state}, not releasing`, { hostId: command.hostId, state: state.state });
  }
  if (state.releaseTaskId !== command.taskId) return taskMismatch(command, state.releaseTaskId ?? "");
  const wipe = state.wipe ?? null;
  if (!wipe || wipe.taskId !== command.taskId || wipe.stage !== "wiped") {
    // No host goes back to the pool with the last tenant's data on its disks.
    return new DomainError("wipe_not_done", `host ${command.hostId} has not been wiped by release task ${command.taskId}`, {
      hostId: command.hostId,
      taskId: command.taskId,
      wipeStage: wipe && wipe.taskId === command.taskId ? wipe.stage : null,
    });
  }
  return [hostEvent("HostReleased", { hostId: command.hostId, datacenter: state.datacenter ?? state.provisioning?.datacenter ?? "", taskId: command.taskId, at: command.at })];
}

function decideFailRelease(command: HostCommandOf<"FailRelease">, state: HostState): Result {
  const failed = (): Result => [
    hostEvent("HostReleaseFailed", {
      hostId: command.hostId,
      datacenter: state.datacenter ?? state.provisioning?.datacenter ?? "",
      taskId: command.taskId,
      reason: command.reason,
      wipeStage: state.wipe?.taskId === command.taskId ? state.wipe.stage : null,
      at: command.at,
    }),
  ];
  switch (state.state) {
    case "releasing":
      return state.releaseTaskId === command.taskId ? failed() : taskMismatch(command, state.releaseTaskId ?? "");
    case "release_failed":
      return state.releaseTaskId === command.taskId ? [] : taskMismatch(command, state.releaseTaskId ?? "");
    case "available":
      // A release of an available host (it held no tenant's data since its last release): only its unfinished
      // wipe ends, so that the host is not kept from provisioning by a wipe nobody waits for any more.
      return wipeInProgress(state)?.taskId === command.taskId ? failed() : [];
    default:
      return new DomainError("host_not_releasing", `host ${command.hostId} is ${state.state}, not releasing`, { hostId: command.hostId, state: state.state });
  }
}

function decideRequestWipe(command: HostCommandOf<"RequestWipe">, state: HostState): Result {
  if (state.state === "releasing") {
    if (state.releaseTaskId !== command.taskId) return taskMismatch(command, state.releaseTaskId ?? "");
  } else if (state.state !== "available") {
    return new DomainError("host_not_releasing", `host ${command.hostId} is ${state.state}, not releasing`, { hostId: command.hostId, state: state.state });
  }
  // The same task again, whatever its wipe came to: a repeated step must not netboot the host a second time.
  if (state.wipe?.taskId === command.taskId) return [];
  // A wipe of another task still in progress on an available host is taken over (that task's wait sees it and fails).
  return [hostEvent("HostWipeRequested", { hostId: command.hostId, datacenter: state.datacenter ?? command.datacenter, taskId: command.taskId, at: command.at })];
}

function wipeAllowed(state: HostState): HostWipe | null {
  return state.state === "releasing" || state.state === "available" ? wipeInProgress(state) : null;
}

function decideRecordWipeNetbootFetched(command: HostCommandOf<"RecordWipeNetbootFetched">, state: HostState): Result {
  const wipe = wipeAllowed(state);
  if (!wipe) {
    return new DomainError("netboot_not_expected", `host ${command.hostId} is not waiting for a wipe netboot`, {
      hostId: command.hostId,
      state: state.state,
      wipeStage: state.wipe?.stage ?? null,
    });
  }
  if (wipe.stage === "netboot-fetched" && wipe.token?.digest === command.tokenDigest) return [];
  return [
    hostEvent("HostWipeNetbootFetched", {
      hostId: command.hostId,
      datacenter: state.datacenter ?? "",
      taskId: wipe.taskId,
      mac: command.mac,
      tokenDigest: command.tokenDigest,
      at: command.at,
    }),
  ];
}

function decideRecordWipeReported(command: HostCommandOf<"RecordWipeReported">, state: HostState): Result {
  const wipe = wipeAllowed(state);
  if (!wipe || wipe.stage !== "netboot-fetched" || !wipe.token || wipe.token.consumed || wipe.token.digest !== command.tokenDigest) {
    return new DomainError("wipe_token_invalid", `the wipe token is not valid for host ${command.hostId}`, { hostId: command.hostId });
  }
  return [
    hostEvent("HostWipeReported", {
      hostId: command.hostId,
      datacenter: state.datacenter ?? "",
      taskId: wipe.taskId,
      outcome: command.outcome,
      message: command.message,
      devices: command.devices,
      bytesWiped: command.bytesWiped,
      at: command.at,
    }),
  ];
}

function decideRecordPowerObservation(command: HostCommandOf<"RecordPowerObservation">, state: HostState): Result {
  const before = state.observedPower;
  if (before) {
    if (before.state === command.state) return [];
    if (Date.parse(command.observedAt) <= Date.parse(before.observedAt)) return []; // older than what is recorded
  }
  return [
    hostEvent("HostPowerStateObserved", {
      hostId: command.hostId,
      state: command.state,
      observedAt: command.observedAt,
      firstSeenAt: command.firstSeenAt,
      previousState: before?.state ?? null,
    }),
  ];
}

function decideSetDesiredPower(command: HostCommandOf<"SetDesiredPower">, state: HostState): Result {
  if (state.desiredPower?.state === command.state) return [];
  const { type: _type, ...data } = command;
  return [hostEvent("HostDesiredPowerSet", data)];
}

function decide(command: HostCommand, state: HostState): Result {
  switch (command.type) {
    case "StartProvisioning":
      return decideStartProvisioning(command, state);
    case "RecordNetbootRequested":
      return decideRecordNetbootRequested(command, state);
    case "RecordNetbootFetched":
      return decideRecordNetbootFetched(command, state);
    case "RecordInstallReported":
      return decideRecordInstallReported(command, state);
    case "CompleteProvisioning":
      return decideCompleteProvisioning(command, state);
    case "FailProvisioning":
      return decideFailProvisioning(command, state);
    case "StartRelease":
      return decideStartRelease(command, state);
    case "CompleteRelease":
      return decideCompleteRelease(command, state);
    case "FailRelease":
      return decideFailRelease(command, state);
    case "RequestWipe":
      return decideRequestWipe(command, state);
    case "RecordWipeNetbootFetched":
      return decideRecordWipeNetbootFetched(command, state);
    case "RecordWipeReported":
      return decideRecordWipeReported(command, state);
    case "RecordPowerObservation":
      return decideRecordPowerObservation(command, state);
    case "SetDesiredPower":
      return decideSetDesiredPower(command, state);
    default:
      return unreachable(command);
  }
}

function withProvisioning(state: HostState, change: Partial<HostProvisioning>): HostState {
  return state.provisioning ? { ...state, provisioning: { ...state.provisioning, ...change } } : state;
}

function withWipe(state: HostState, change: Partial<HostWipe>): HostState {
  return state.wipe ? { ...state, wipe: { ...state.wipe, ...change } } : state;
}

function evolve(state: HostState, event: HostEvent): HostState {
  const base: HostState = state.hostId === null ? { ...state, hostId: event.data.hostId } : state;
  switch (event.type) {
    case "HostProvisioningStarted": {
      const d = event.data;
      return {
        ...base,
        datacenter: d.datacenter,
        state: "provisioning",
        provisioning: {
          taskId: d.taskId,
          datacenter: d.datacenter,
          tenantId: d.tenantId,
          projectId: d.projectId,
          environmentId: d.environmentId,
          role: d.role,
          stage: "allocated",
          startedAt: d.at,
          token: null,
          netbootFetchedAt: null,
          installReportedAt: null,
          failureReason: null,
        },
      };
    }
    case "HostNetbootRequested":
      return { ...withProvisioning(base, { stage: "netboot-requested" }), nextBoot: "pxe" };
    case "HostNetbootFetched":
      return withProvisioning(base, { stage: "netboot-fetched", token: { digest: event.data.tokenDigest, consumed: false }, netbootFetchedAt: event.data.at });
    case "HostInstallReported":
      return withProvisioning(base, {
        stage: event.data.outcome === "succeeded" ? "installed" : "install-failed",
        token: base.provisioning?.token ? { ...base.provisioning.token, consumed: true } : null,
        installReportedAt: event.data.at,
      });
    case "HostProvisioned":
      return { ...base, state: "ready", nextBoot: "disk" };
    case "HostProvisioningFailed":
      return { ...withProvisioning(base, { failureReason: event.data.reason }), state: "provision_failed" };
    case "HostReleaseStarted":
      return { ...base, datacenter: event.data.datacenter, state: "releasing", releaseTaskId: event.data.taskId, releaseFailure: null };
    case "HostReleased":
      return { ...base, state: "available", provisioning: null, releaseTaskId: event.data.taskId, releaseFailure: null };
    case "HostReleaseFailed": {
      const d = event.data;
      const failure = { taskId: d.taskId, reason: d.reason, at: d.at };
      // This task's wipe, if still running, ends with the task: its token stops working and the boot service stops serving the wipe image.
      const running = wipeInProgress(base);
      const ended =
        running && running.taskId === d.taskId
          ? withWipe(base, { stage: "wipe-failed", token: running.token ? { ...running.token, consumed: true } : null, message: `release task failed: ${d.reason}` })
          : base;
      return { ...ended, state: base.state === "releasing" ? "release_failed" : base.state, releaseFailure: failure };
    }
    case "HostWipeRequested":
      return {
        ...base,
        datacenter: event.data.datacenter,
        wipe: {
          taskId: event.data.taskId,
          stage: "requested",
          requestedAt: event.data.at,
          token: null,
          netbootFetchedAt: null,
          reportedAt: null,
          message: null,
          devices: [],
          bytesWiped: null,
        },
      };
    case "HostWipeNetbootFetched":
      return withWipe(base, { stage: "netboot-fetched", token: { digest: event.data.tokenDigest, consumed: false }, netbootFetchedAt: event.data.at });
    case "HostWipeReported":
      return withWipe(base, {
        stage: event.data.outcome === "succeeded" ? "wiped" : "wipe-failed",
        token: base.wipe?.token ? { ...base.wipe.token, consumed: true } : null,
        reportedAt: event.data.at,
        message: event.data.message,
        devices: event.data.devices,
        bytesWiped: event.data.bytesWiped,
      });
    case "HostPowerStateObserved":
      return { ...base, observedPower: { state: event.data.state, observedAt: event.data.observedAt } };
    case "HostDesiredPowerSet":
      return { ...base, desiredPower: { state: event.data.state, taskId: event.data.taskId, at: event.data.at } };
    default:
      return unreachable(event);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled host message ${JSON.stringify(value)}`);
}

export const hostDecider: Decider<HostCommand, HostEvent, HostState> = {
  initialState: initialHostState,
  decide,
  evolve,
};
