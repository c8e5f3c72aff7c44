import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  HostCommandSchema,
  hostDecider,
  hostEvent,
  hostStreamId,
  MASKIN_HOST_STREAM_PREFIX,
  type HostCommand,
  type HostCommandInput,
  type HostCommandOf,
  type HostEvent,
} from "../../../../domain/maskin/index.ts";
import { fold } from "../../../../domain/shared/decider.ts";
import { DomainError } from "../../../../domain/shared/errors.ts";
import { deciderSpec } from "../../support/decider-spec.ts";

const spec = deciderSpec(hostDecider);
const H = "host-1";
const DC = "osl1";
const T = "task-p";
const R = "task-r";
const at = "2026-12-01T10:00:00.000Z";
const digest = "a".repeat(64);
const other = "b".repeat(64);
const cmd = (input: HostCommandInput): HostCommand => HostCommandSchema.parse(input);

const start = cmd({ type: "StartProvisioning", hostId: H, datacenter: DC, taskId: T, tenantId: "a", projectId: "p", environmentId: null, role: "worker", at }) as HostCommandOf<"StartProvisioning">;
const started = hostEvent("HostProvisioningStarted", { hostId: H, datacenter: DC, taskId: T, tenantId: "a", projectId: "p", environmentId: null, role: "worker", at });
const requested = hostEvent("HostNetbootRequested", { hostId: H, datacenter: DC, taskId: T, at });
const fetched = (d = digest) => hostEvent("HostNetbootFetched", { hostId: H, datacenter: DC, taskId: T, mac: "52:54:00:12:34:01", tokenDigest: d, at });
const reported = (outcome: "succeeded" | "failed" = "succeeded") =>
  hostEvent("HostInstallReported", { hostId: H, datacenter: DC, taskId: T, outcome, message: "", at });
const provisioned = hostEvent("HostProvisioned", { hostId: H, datacenter: DC, taskId: T, nextBoot: "disk", at });
const fetch = (d = digest) => cmd({ type: "RecordNetbootFetched", hostId: H, mac: "52:54:00:12:34:01", tokenDigest: d, at });
const report = (d = digest, outcome: "succeeded" | "failed" = "succeeded") => cmd({ type: "RecordInstallReported", hostId: H, tokenDigest: d, outcome, at });
const complete = (taskId = T) => cmd({ type: "CompleteProvisioning", hostId: H, taskId, at });
const releaseStarted = hostEvent("HostReleaseStarted", { hostId: H, datacenter: DC, taskId: R, provisionedByTaskId: T, at });
const requestWipe = (taskId = R) => cmd({ type: "RequestWipe", hostId: H, datacenter: DC, taskId, at });
const wipeRequested = (taskId = R) => hostEvent("HostWipeRequested", { hostId: H, datacenter: DC, taskId, at });
const WIPER_MAC = "52:54:00:12:34:01";
const fetchWipe = (d = digest) => cmd({ type: "RecordWipeNetbootFetched", hostId: H, mac: WIPER_MAC, tokenDigest: d, at });
const wipeFetched = (d = digest, taskId = R) => hostEvent("HostWipeNetbootFetched", { hostId: H, datacenter: DC, taskId, mac: WIPER_MAC, tokenDigest: d, at });
const reportWipe = (d = digest, outcome: "succeeded" | "failed" = "succeeded") =>
  cmd({ type: "RecordWipeReported", hostId: H, tokenDigest: d, outcome, message: outcome === "failed" ? "dd failed" : "", devices: ["/dev/vda"], bytesWiped: 67108864, at });
const wipeReported = (outcome: "succeeded" | "failed" = "succeeded", taskId = R) =>
  hostEvent("HostWipeReported", { hostId: H, datacenter: DC, taskId, outcome, message: outcome === "failed" ? "dd failed" : "", devices: ["/dev/vda"], bytesWiped: 67108864, at });

describe("Host decider: provisioning", () => {
  it("stream ids", () => {
    expect(hostStreamId("x")).toBe(`${MASKIN_HOST_STREAM_PREFIX}x`);
    expect(hostStreamId("x")).toBe("maskin-host-x");
  });

  it("starts provisioning an available host once; the same task again is a no-op; another task is refused", () => {
    const { state } = spec.given([]).when(start).then([started]);
    expect(state.state).toBe("provisioning");
    expect(state.provisioning?.stage).toBe("allocated");
    spec.given([started]).when(start).thenNothing();
    spec.given([started]).when({ ...start, taskId: "other" }).thenFails("host_not_available", { holderTaskId: T, state: "provisioning" });
  });

  it("walks allocated → netboot-requested → netboot-fetched → installed → ready with next boot from disk", () => {
    spec.given([started]).when(cmd({ type: "RecordNetbootRequested", hostId: H, taskId: T, at })).then([requested]);
    spec.given([started, requested]).when(cmd({ type: "RecordNetbootRequested", hostId: H, taskId: T, at })).thenNothing();
    spec.given([started, requested]).when(fetch()).then([fetched()]);
    spec.given([started, requested, fetched()]).when(report()).then([reported()]);
    const { state } = spec.given([started, requested, fetched(), reported()]).when(complete()).then([provisioned]);
    expect(state.state).toBe("ready");
    expect(state.nextBoot).toBe("disk");
    spec.given([started, requested, fetched(), reported(), provisioned]).when(complete()).thenNothing();
  });

  it("a netboot request from another task is refused", () => {
    spec.given([started]).when(cmd({ type: "RecordNetbootRequested", hostId: H, taskId: "x", at })).thenFails("host_task_mismatch", { holderTaskId: T });
  });

  it("a netboot fetch outside provisioning or after install is not expected (the boot service boots from disk)", () => {
    spec.given([]).when(fetch()).thenFails("netboot_not_expected", { state: "available" });
    spec.given([started, requested, fetched(), reported()]).when(fetch(other)).thenFails("netboot_not_expected", { stage: "installed" });
    spec.given([started, requested, fetched(), reported(), provisioned]).when(fetch(other)).thenFails("netboot_not_expected", { state: "ready" });
  });

  it("a second fetch issues a new token and the old one stops working; the same fetch again is a no-op", () => {
    spec.given([started, fetched()]).when(fetch()).thenNothing();
    spec.given([started, fetched()]).when(fetch(other)).then([fetched(other)]);
    spec.given([started, fetched(), fetched(other)]).when(report(digest)).thenFails("install_token_invalid");
    spec.given([started, fetched(), fetched(other)]).when(report(other)).then([reported()]);
  });

  it("the install token: refused when wrong, before any fetch, or used twice", () => {
    spec.given([started, requested]).when(report()).thenFails("install_token_invalid");
    spec.given([started, fetched()]).when(report(other)).thenFails("install_token_invalid");
    spec.given([started, fetched(), reported()]).when(report()).thenFails("install_token_invalid");
    spec.given([]).when(report()).thenFails("install_token_invalid");
  });

  it("a failed install ends at stage install-failed; completing it is refused; failing provisioning keeps the stage", () => {
    const { state } = spec.given([started, fetched()]).when(report(digest, "failed")).then([reported("failed")]);
    expect(state.provisioning?.stage).toBe("install-failed");
    spec.given([started, fetched(), reported("failed")]).when(complete()).thenFails("provisioning_not_installed", { stage: "install-failed" });
    const failed = hostEvent("HostProvisioningFailed", { hostId: H, datacenter: DC, taskId: T, stage: "install-failed", reason: "installer said no", at });
    const fail = cmd({ type: "FailProvisioning", hostId: H, taskId: T, reason: "installer said no", at });
    const after = spec.given([started, fetched(), reported("failed")]).when(fail).then([failed]);
    expect(after.state.state).toBe("provision_failed");
    spec.given([started, fetched(), reported("failed"), failed]).when(fail).thenNothing();
    // then only release is allowed
    spec.given([started, failed]).when(start).thenNothing(); // same task: no-op
    spec.given([started, failed]).when({ ...start, taskId: "new" }).thenFails("host_not_available", { state: "provision_failed" });
    spec.given([started, failed]).when(cmd({ type: "StartRelease", hostId: H, taskId: R, at })).then([releaseStarted]);
  });

  it("completing before the install was reported is refused with the stage", () => {
    spec.given([started, requested]).when(complete()).thenFails("provisioning_not_installed", { stage: "netboot-requested" });
    spec.given([]).when(complete()).thenFails("host_not_provisioning");
  });
});

describe("Host decider: release", () => {
  const ready = [started, requested, fetched(), reported(), provisioned];
  const startRelease = (taskId = R) => cmd({ type: "StartRelease", hostId: H, taskId, at });
  const completeRelease = (taskId = R) => cmd({ type: "CompleteRelease", hostId: H, taskId, at });
  const released = hostEvent("HostReleased", { hostId: H, datacenter: DC, taskId: R, at });

  const wiped = [wipeRequested(), wipeFetched(), wipeReported()];

  it("ready → releasing → wiped → available; each step repeated is a no-op", () => {
    spec.given(ready).when(startRelease()).then([releaseStarted]);
    spec.given([...ready, releaseStarted]).when(startRelease()).thenNothing();
    spec.given([...ready, releaseStarted]).when(startRelease("other")).thenFails("host_not_releasable", { holderTaskId: R });
    const { state } = spec.given([...ready, releaseStarted, ...wiped]).when(completeRelease()).then([released]);
    expect(state.state).toBe("available");
    expect(state.provisioning).toBeNull();
    expect(state.wipe).toMatchObject({ taskId: R, stage: "wiped", devices: ["/dev/vda"], bytesWiped: 67108864 });
    spec.given([...ready, releaseStarted, ...wiped, released]).when(completeRelease()).thenNothing();
    spec.given([...ready, releaseStarted, ...wiped, released]).when(startRelease()).thenNothing();
    // and can be provisioned again
    spec.given([...ready, releaseStarted, ...wiped, released]).when({ ...start, taskId: "t2" }).then([{ ...started, data: { ...started.data, taskId: "t2" } }]);
  });

  it("a host being provisioned cannot be released; a release of another task cannot be completed", () => {
    spec.given([started]).when(startRelease()).thenFails("host_not_releasable", { state: "provisioning" });
    spec.given([...ready, releaseStarted, ...wiped]).when(completeRelease("other")).thenFails("host_task_mismatch");
    spec.given(ready).when(completeRelease()).thenFails("host_not_releasing");
    spec.given([...ready, releaseStarted]).when(start).thenFails("host_not_available", { state: "releasing" });
  });

  it("no host goes back to the pool unwiped: CompleteRelease before this release's wipe succeeded is wipe_not_done", () => {
    spec.given([...ready, releaseStarted]).when(completeRelease()).thenFails("wipe_not_done", { wipeStage: null });
    spec.given([...ready, releaseStarted, wipeRequested()]).when(completeRelease()).thenFails("wipe_not_done", { wipeStage: "requested" });
    spec.given([...ready, releaseStarted, wipeRequested(), wipeFetched()]).when(completeRelease()).thenFails("wipe_not_done", { wipeStage: "netboot-fetched" });
    spec.given([...ready, releaseStarted, wipeRequested(), wipeFetched(), wipeReported("failed")]).when(completeRelease()).thenFails("wipe_not_done", { wipeStage: "wipe-failed" });
  });

  it("the wipe: requested → netboot-fetched (one-time token) → wiped; repeats are no-ops", () => {
    const releasing = [...ready, releaseStarted];
    const { state: afterRequest } = spec.given(releasing).when(requestWipe()).then([wipeRequested()]);
    expect(afterRequest.wipe).toMatchObject({ taskId: R, stage: "requested", token: null });
    spec.given([...releasing, wipeRequested()]).when(requestWipe()).thenNothing();
    spec.given([...releasing, ...wiped]).when(requestWipe()).thenNothing();
    const { state: afterFetch } = spec.given([...releasing, wipeRequested()]).when(fetchWipe()).then([wipeFetched()]);
    expect(afterFetch.wipe).toMatchObject({ stage: "netboot-fetched", token: { digest, consumed: false } });
    spec.given([...releasing, wipeRequested(), wipeFetched()]).when(fetchWipe()).thenNothing();
    const { state: afterReport } = spec.given([...releasing, wipeRequested(), wipeFetched()]).when(reportWipe()).then([wipeReported()]);
    expect(afterReport.wipe).toMatchObject({ stage: "wiped", token: { digest, consumed: true } });
    expect(afterReport.state).toBe("releasing");
  });

  it("the wipe token: refused when wrong, before any fetch, replaced by a new fetch, or used twice", () => {
    const releasing = [...ready, releaseStarted, wipeRequested()];
    spec.given(releasing).when(reportWipe()).thenFails("wipe_token_invalid");
    spec.given([...releasing, wipeFetched()]).when(reportWipe(other)).thenFails("wipe_token_invalid");
    spec.given([...releasing, wipeFetched()]).when(fetchWipe(other)).then([wipeFetched(other)]);
    spec.given([...releasing, wipeFetched(), wipeFetched(other)]).when(reportWipe(digest)).thenFails("wipe_token_invalid");
    spec.given([...releasing, wipeFetched(), wipeReported()]).when(reportWipe()).thenFails("wipe_token_invalid");
    // an install token is not a wipe token, and a wipe token is not an install token
    spec.given([...releasing, wipeFetched()]).when(report(digest)).thenFails("install_token_invalid");
  });

  it("a wipe netboot is expected only while a wipe waits for it; a wipe is asked only by the release task or of an available host", () => {
    spec.given(ready).when(fetchWipe()).thenFails("netboot_not_expected");
    spec.given([...ready, releaseStarted]).when(fetchWipe()).thenFails("netboot_not_expected");
    spec.given([...ready, releaseStarted, ...wiped]).when(fetchWipe()).thenFails("netboot_not_expected");
    spec.given(ready).when(requestWipe()).thenFails("host_not_releasing", { state: "ready" });
    spec.given([started]).when(requestWipe()).thenFails("host_not_releasing", { state: "provisioning" });
    spec.given([...ready, releaseStarted]).when(requestWipe("other")).thenFails("host_task_mismatch");
    // the installer's netboot during a wipe is not expected either: the boot service serves the wipe
    spec.given([...ready, releaseStarted, wipeRequested()]).when(fetch()).thenFails("netboot_not_expected");
  });

  it("an available host is wiped without changing its lifecycle; while the wipe runs it cannot be provisioned", () => {
    const { state } = spec.given([]).when(requestWipe()).then([wipeRequested()]);
    expect(state.state).toBe("available");
    expect(state.datacenter).toBe(DC);
    spec.given([wipeRequested()]).when(start).thenFails("host_not_available", { holderTaskId: R });
    spec.given([wipeRequested(), wipeFetched()]).when(start).thenFails("host_not_available", { holderTaskId: R });
    spec.given([wipeRequested(), wipeFetched(), wipeReported()]).when(start).then([started]);
    spec.given([wipeRequested(), wipeFetched(), wipeReported("failed")]).when(start).then([started]);
    // another release task takes an unfinished wipe of an available host over
    spec.given([wipeRequested(), wipeFetched()]).when(requestWipe("r2")).then([wipeRequested("r2")]);
    spec.given([wipeRequested(), wipeFetched(), wipeRequested("r2")]).when(reportWipe()).thenFails("wipe_token_invalid");
  });

  it("a release whose wipe failed can be taken over by another release task", () => {
    const failedRelease = [...ready, releaseStarted, wipeRequested(), wipeFetched(), wipeReported("failed")];
    spec.given(failedRelease).when(startRelease("r2")).then([{ ...releaseStarted, data: { ...releaseStarted.data, taskId: "r2" } }]);
    spec.given([...ready, releaseStarted, wipeRequested(), wipeFetched()]).when(startRelease("r2")).thenFails("host_not_releasable");
  });
});

describe("Host decider: a failed release", () => {
  const ready = [started, requested, fetched(), reported(), provisioned];
  const startRelease = (taskId = R) => cmd({ type: "StartRelease", hostId: H, taskId, at });
  const completeRelease = (taskId = R) => cmd({ type: "CompleteRelease", hostId: H, taskId, at });
  const failRelease = (taskId = R, reason = "deadline passed while waiting for the wipe to report") => cmd({ type: "FailRelease", hostId: H, taskId, reason, at });
  const releaseFailed = (wipeStage: "requested" | "netboot-fetched" | "wiped" | "wipe-failed" | null, taskId = R, reason = "deadline passed while waiting for the wipe to report") =>
    hostEvent("HostReleaseFailed", { hostId: H, datacenter: DC, taskId, reason, wipeStage, at });
  const r2Started = hostEvent("HostReleaseStarted", { hostId: H, datacenter: DC, taskId: "r2", provisionedByTaskId: T, at });
  const waitingForWipe = [...ready, releaseStarted, wipeRequested(), wipeFetched()];

  it("given a release waiting for its wipe, when its task fails, then the host is release_failed and the wipe ends with it", () => {
    const { state } = spec.given(waitingForWipe).when(failRelease()).then([releaseFailed("netboot-fetched")]);
    expect(state.state).toBe("release_failed");
    expect(state.releaseTaskId).toBe(R);
    expect(state.releaseFailure).toEqual({ taskId: R, reason: "deadline passed while waiting for the wipe to report", at });
    expect(state.wipe).toMatchObject({ taskId: R, stage: "wipe-failed", token: { digest, consumed: true }, message: "release task failed: deadline passed while waiting for the wipe to report" });
    // the tenant's provisioning is kept: its admins may release the host again
    expect(state.provisioning).toMatchObject({ taskId: T, tenantId: "a", projectId: "p" });
  });

  it("given a release that never asked for a wipe, when its task is cancelled, then the host is release_failed with no wipe stage", () => {
    const { state } = spec.given([...ready, releaseStarted]).when(failRelease(R, "task cancelled: operator")).then([releaseFailed(null, R, "task cancelled: operator")]);
    expect(state.state).toBe("release_failed");
    expect(state.wipe).toBeNull();
  });

  it("given a failed release, the same FailRelease again is a no-op; another task's FailRelease is refused", () => {
    spec.given([...waitingForWipe, releaseFailed("netboot-fetched")]).when(failRelease()).thenNothing();
    spec.given([...waitingForWipe, releaseFailed("netboot-fetched")]).when(failRelease("r2")).thenFails("host_task_mismatch", { holderTaskId: R });
    spec.given(waitingForWipe).when(failRelease("r2")).thenFails("host_task_mismatch", { holderTaskId: R });
    spec.given(ready).when(failRelease()).thenFails("host_not_releasing", { state: "ready" });
    spec.given([started]).when(failRelease()).thenFails("host_not_releasing", { state: "provisioning" });
  });

  it("given a release_failed host, when another task starts a release, then it is accepted, wipes again and completes", () => {
    const failed = [...waitingForWipe, releaseFailed("netboot-fetched")];
    const { state } = spec.given(failed).when(startRelease("r2")).then([r2Started]);
    expect(state.state).toBe("releasing");
    expect(state.releaseFailure).toBeNull();
    // the failed task itself starts nothing again
    spec.given(failed).when(startRelease()).thenFails("host_not_releasable", { state: "release_failed", holderTaskId: R });
    // r2's wipe is a new one; the failed task's old token no longer works
    spec.given([...failed, r2Started]).when(requestWipe("r2")).then([wipeRequested("r2")]);
    spec.given([...failed, r2Started, wipeRequested("r2")]).when(reportWipe()).thenFails("wipe_token_invalid");
    const done = [...failed, r2Started, wipeRequested("r2"), wipeFetched(other, "r2"), wipeReported("succeeded", "r2")];
    const { state: released } = spec.given(done).when(completeRelease("r2")).then([hostEvent("HostReleased", { hostId: H, datacenter: DC, taskId: "r2", at })]);
    expect(released.state).toBe("available");
  });

  it("given a release_failed host, it is never provisioned, wiped, or returned without a new release", () => {
    const failed = [...waitingForWipe, releaseFailed("netboot-fetched")];
    spec.given(failed).when(start).thenFails("host_not_available", { state: "release_failed" });
    spec.given(failed).when({ ...start, taskId: "t2" }).thenFails("host_not_available", { state: "release_failed" });
    spec.given(failed).when(completeRelease()).thenFails("host_not_releasing", { state: "release_failed" });
    spec.given(failed).when(requestWipe()).thenFails("host_not_releasing", { state: "release_failed" });
    spec.given(failed).when(fetchWipe(other)).thenFails("netboot_not_expected");
    spec.given(failed).when(reportWipe()).thenFails("wipe_token_invalid");
    // even a release whose wipe had succeeded, failing before its return, must be released again (and wiped again)
    const wipedThenFailed = [...ready, releaseStarted, wipeRequested(), wipeFetched(), wipeReported(), releaseFailed("wiped")];
    spec.given(wipedThenFailed).when(completeRelease()).thenFails("host_not_releasing");
    spec.given([...wipedThenFailed, r2Started]).when(completeRelease("r2")).thenFails("wipe_not_done", { wipeStage: null });
  });

  it("given an available host being wiped, when its release task fails, then the host stays available and may be provisioned", () => {
    const { state } = spec.given([wipeRequested(), wipeFetched()]).when(failRelease()).then([releaseFailed("netboot-fetched")]);
    expect(state.state).toBe("available");
    expect(state.wipe?.stage).toBe("wipe-failed");
    spec.given([wipeRequested(), wipeFetched(), releaseFailed("netboot-fetched")]).when(start).then([started]);
    // a task whose wipe was taken over, or that has none, records nothing
    spec.given([wipeRequested(), wipeRequested("r2")]).when(failRelease()).thenNothing();
    spec.given([]).when(failRelease()).thenNothing();
  });
});

describe("Host decider: power", () => {
  const observe = (state: "on" | "off", second: number, previousState: "on" | "off" | null = null) =>
    cmd({
      type: "RecordPowerObservation",
      hostId: H,
      state,
      observedAt: `2026-12-01T10:00:${String(second).padStart(2, "0")}.000Z`,
      firstSeenAt: `2026-12-01T10:00:${String(second - 1).padStart(2, "0")}.000Z`,
      previousState,
    });
  const observed = (state: "on" | "off", second: number, previousState: "on" | "off" | null) => {
    const { type: _t, ...data } = observe(state, second, previousState) as Extract<HostCommand, { type: "RecordPowerObservation" }>;
    return hostEvent("HostPowerStateObserved", data);
  };

  it("records an observed change; the same state again or an older observation changes nothing", () => {
    spec.given([]).when(observe("on", 10)).then([observed("on", 10, null)]);
    spec.given([observed("on", 10, null)]).when(observe("on", 20, null)).thenNothing();
    spec.given([observed("on", 10, null)]).when(observe("off", 5, "on")).thenNothing();
    // previousState comes from what was recorded, not from the caller
    spec.given([observed("on", 10, null)]).when(observe("off", 20, null)).then([observed("off", 20, "on")]);
  });

  it("desired power: set once, the same again is a no-op", () => {
    const set = cmd({ type: "SetDesiredPower", hostId: H, state: "on", taskId: T, at });
    const { state } = spec.given([]).when(set).then([hostEvent("HostDesiredPowerSet", { hostId: H, state: "on", taskId: T, at })]);
    expect(state.desiredPower?.state).toBe("on");
    spec.given([hostEvent("HostDesiredPowerSet", { hostId: H, state: "on", taskId: T, at })]).when(set).thenNothing();
  });
});

describe("Host decider: properties", () => {
  const tasks = ["t1", "t2", "t3"];
  const digests = [digest, other];
  const commandArb: fc.Arbitrary<HostCommand> = fc.oneof(
    fc.constantFrom(...tasks).map((taskId) => ({ ...start, taskId })),
    fc.constantFrom(...tasks).map((taskId) => cmd({ type: "RecordNetbootRequested", hostId: H, taskId, at })),
    fc.constantFrom(...digests).map((d) => fetch(d)),
    fc.tuple(fc.constantFrom(...digests), fc.constantFrom("succeeded" as const, "failed" as const)).map(([d, o]) => report(d, o)),
    fc.constantFrom(...tasks).map((taskId) => complete(taskId)),
    fc.constantFrom(...tasks).map((taskId) => cmd({ type: "FailProvisioning", hostId: H, taskId, reason: "r", at })),
    fc.constantFrom(...tasks, "r1", "r2").map((taskId) => cmd({ type: "StartRelease", hostId: H, taskId, at })),
    fc.constantFrom(...tasks, "r1", "r2").map((taskId) => cmd({ type: "CompleteRelease", hostId: H, taskId, at })),
    fc.constantFrom(...tasks, "r1", "r2").map((taskId) => requestWipe(taskId)),
    fc.constantFrom(...tasks, "r1", "r2").map((taskId) => cmd({ type: "FailRelease", hostId: H, taskId, reason: "r", at })),
    fc.constantFrom(...digests).map((d) => fetchWipe(d)),
    fc.tuple(fc.constantFrom(...digests), fc.constantFrom("succeeded" as const, "failed" as const)).map(([d, o]) => reportWipe(d, o)),
  );

  it("a host is held by at most one task at a time, and no command on a held host hands it to another task", () => {
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 40 }), (commands) => {
        let history: HostEvent[] = [];
        for (const command of commands) {
          const before = fold(hostDecider, history);
          const outcome = hostDecider.decide(command, before);
          if (outcome instanceof DomainError) continue;
          history = [...history, ...outcome];
          const after = fold(hostDecider, history);
          // provisioning can start only from available: a holder is never replaced by another
          if (before.state !== "available" && after.provisioning && before.provisioning) {
            expect(after.provisioning.taskId).toBe(before.provisioning.taskId);
          }
          // an install is reported at most once per fetch token
          const reports = outcome.filter((e) => e.type === "HostInstallReported");
          if (reports.length > 0) expect(before.provisioning?.token?.consumed).toBe(false);
          // a wipe is reported at most once per wipe token
          if (outcome.some((e) => e.type === "HostWipeReported")) expect(before.wipe?.token?.consumed).toBe(false);
          // released (back to the pool) only after this release's own wipe succeeded
          if (outcome.some((e) => e.type === "HostReleased")) expect(before.wipe).toMatchObject({ taskId: before.releaseTaskId, stage: "wiped" });
          // an available host with a wipe in progress is never handed to a provisioning
          if (outcome.some((e) => e.type === "HostProvisioningStarted")) expect(["requested", "netboot-fetched"]).not.toContain(before.wipe?.stage);
          // provisioning starts only on an available host (never releasing or release_failed)
          if (outcome.some((e) => e.type === "HostProvisioningStarted")) expect(before.state).toBe("available");
          // a release_failed host leaves that state only by another task's release
          if (before.state === "release_failed" && after.state !== "release_failed") {
            expect(after.state).toBe("releasing");
            expect(after.releaseTaskId).not.toBe(before.releaseTaskId);
          }
          // ready only from installed
          if (after.state === "ready" && before.state !== "ready") expect(before.provisioning?.stage).toBe("installed");
          // deciding again on the new state is idempotent for the same command
          const again = hostDecider.decide(command, after);
          if (!(again instanceof DomainError) && command.type !== "RecordNetbootFetched" && command.type !== "RecordWipeNetbootFetched") expect(again).toEqual([]);
        }
      }),
      { numRuns: 300 },
    );
  });
});
