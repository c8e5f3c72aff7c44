import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { vmMac } from "../../../../../domain/maskin/vm/mac.ts";
import { vmStreamId } from "../../../../../domain/maskin/vm/stream.ts";
import { orphanProcesses, VmCommandSchema, vmDecider, vmDrift, vmEvent, type VmCommandInput, type VmEvent } from "../../../../../domain/maskin/vm/vm.ts";
import { fold } from "../../../../../domain/shared/decider.ts";
import { DomainError } from "../../../../../domain/shared/errors.ts";
import { deciderSpec } from "../../../support/decider-spec.ts";

const spec = deciderSpec(vmDecider);
const at = "2026-12-01T10:00:00.000Z";
const later = "2026-12-01T10:05:00.000Z";
const cmd = (input: VmCommandInput) => VmCommandSchema.parse(input);
const quota = { limits: { vms: 3, vcpus: 8, memoryMiB: 8192 }, usage: { vms: 1, vcpus: 2, memoryMiB: 2048 } };
const create = (over: Record<string, unknown> = {}) =>
  cmd({
    type: "CreateVm",
    vmId: "vm1",
    name: "web-1",
    tenantId: "acme",
    projectId: "shop",
    environmentId: null,
    datacenter: "osl1",
    resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 20 },
    image: { name: "debian", version: "12.1" },
    disk: { name: "web-1-root", mode: "CreateIfNotExist", template: { image: { name: "debian", version: "12.1" }, sizeGiB: 20, storageClass: "local" } },
    nics: [{}, { network: "user" }],
    quota,
    taskId: "t1",
    at,
    ...over,
  } as VmCommandInput);
const requested = vmEvent("VmRequested", {
  vmId: "vm1",
  taskId: "t1",
  at,
  name: "web-1",
  tenantId: "acme",
  projectId: "shop",
  environmentId: null,
  datacenter: "osl1",
  resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 20 },
  image: { name: "debian", version: "12.1" },
  disk: { name: "web-1-root", mode: "CreateIfNotExist", template: { image: { name: "debian", version: "12.1" }, sizeGiB: 20, storageClass: "local" } },
  nics: [
    { index: 0, network: "user", mac: vmMac("vm1", 0) },
    { index: 1, network: "user", mac: vmMac("vm1", 1) },
  ],
  antiAffinity: null,
  spreadGroup: null,
});
const base = { vmId: "vm1", taskId: "t1", at };
const c = (type: string, extra: Record<string, unknown> = {}) => cmd({ type, ...base, ...extra } as VmCommandInput);
const chosen = { hypervisor: "hv1", hostId: "h1", score: { spreadMembers: 0, utilization: 0.25 } };
const rejected = [{ hypervisor: "hv2", hostId: "h2", reason: "capacity" as const, detail: "vcpus 2 > 0 free" }];
const placing = vmEvent("VmPlacementStarted", base);
const placed = vmEvent("VmPlacementChosen", { ...base, chosen, rejected });
const started = vmEvent("VmStarted", { ...base, hostId: "h1" });
const stopped = vmEvent("VmStopped", { ...base, hostId: "h1" });
const running = [requested, placing, placed, started];
const observed = (o: "running" | "paused" | "shutdown" | "absent", previous: "running" | "paused" | "shutdown" | "absent" | null, when = at) =>
  vmEvent("VmRuntimeObserved", { vmId: "vm1", observed: o, previous, at: when });

describe("VM decider", () => {
  it("create records the request with deterministic NIC MACs; same task again is a no-op; another is vm_exists", () => {
    expect(vmStreamId("vm1")).toBe("maskin-vm-vm1");
    const { state } = spec.given([]).when(create()).then([requested]);
    expect(state).toMatchObject({ lifecycle: "requested", desired: "running" });
    spec.given([requested]).when(create()).thenNothing();
    spec.given([requested]).when(create({ taskId: "t2" })).thenFails("vm_exists");
    spec.given([]).when(c("StartPlacement")).thenFails("vm_not_found");
  });

  it("quota exceeded names the limit and records nothing", () => {
    spec.given([]).when(create({ quota: { ...quota, usage: { vms: 3, vcpus: 0, memoryMiB: 0 } } })).thenFails("quota_exceeded", { limit: "vms", limitValue: 3, usage: 3, requested: 1 });
    const e = spec.given([]).when(create({ resources: { vcpus: 7, memoryMiB: 8192, diskGiB: 1 } })).thenFails("quota_exceeded", { limit: "vcpus", limitValue: 8, usage: 2, requested: 7 });
    expect(e.details.exceeded).toEqual([
      { limit: "vcpus", limitValue: 8, usage: 2, requested: 7 },
      { limit: "memoryMiB", limitValue: 8192, usage: 2048, requested: 8192 },
    ]);
    // exactly at the limit fits; absent limits are unlimited
    spec.given([]).when(create({ resources: { vcpus: 6, memoryMiB: 6144, diskGiB: 1 } })).then([{ ...requested, data: { ...requested.data, resources: { vcpus: 6, memoryMiB: 6144, diskGiB: 1 } } }]);
    spec.given([]).when(create({ quota: { limits: {}, usage: { vms: 100, vcpus: 100, memoryMiB: 1 } } })).then([requested]);
  });

  it("placement: started, blocked with the explanation (stays placing), chosen with chosen + rejected (→ provisioning)", () => {
    spec.given([requested]).when(c("StartPlacement")).then([placing]);
    spec.given([requested, placing]).when(c("StartPlacement")).thenNothing();
    const blocked = vmEvent("VmPlacementBlocked", { ...base, reason: "capacity", blocking: "soft", rejected });
    const b = spec.given([requested, placing]).when(c("RecordPlacementBlocked", { reason: "capacity", blocking: "soft", rejected })).then([blocked]);
    expect(b.state).toMatchObject({ lifecycle: "placing", blocked: { reason: "capacity", blocking: "soft" } });
    const p = spec.given([requested, placing, blocked]).when(c("RecordPlacement", { chosen, rejected })).then([placed]);
    expect(p.state).toMatchObject({ lifecycle: "provisioning", placement: { chosen, rejected }, blocked: null });
    spec.given([requested, placing, placed]).when(c("RecordPlacement", { chosen, rejected })).thenNothing();
    spec.given([requested, placing, placed]).when(c("RecordPlacement", { chosen: { ...chosen, hostId: "h2" }, rejected })).thenFails("vm_invalid_state");
  });

  it("provisioning → running (disk recorded with warnings) ⇄ stopped; reboot only when running", () => {
    const warnings = [{ field: "sizeGiB" as const, existing: "20", requested: "40" }];
    const disk = vmEvent("VmDiskAttached", { ...base, diskName: "web-1-root", warnings });
    spec.given([requested, placing, placed]).when(c("RecordDiskAttached", { diskName: "web-1-root", warnings })).then([disk]);
    spec.given([requested, placing]).when(c("RecordVmStarted")).thenFails("vm_invalid_state", { state: "placing" });
    const r = spec.given([requested, placing, placed, disk]).when(c("RecordVmStarted")).then([started]);
    expect(r.state.disk).toEqual({ name: "web-1-root", warnings });
    spec.given(running).when(c("RecordVmStarted")).thenNothing();
    spec.given(running).when(c("RecordVmStopped")).then([stopped]);
    spec.given([...running, stopped]).when(c("RecordVmStopped")).thenNothing();
    spec.given([...running, stopped]).when(c("RecordVmStarted")).then([started]);
    spec.given(running).when(c("RequestVmReboot")).then([vmEvent("VmRebootRequested", { ...base, hostId: "h1" })]);
    spec.given([...running, stopped]).when(c("RequestVmReboot")).thenFails("vm_not_running");
  });

  it("desired state: set once; not after delete", () => {
    const set = vmEvent("VmDesiredStateSet", { ...base, desired: "stopped" });
    spec.given(running).when(c("SetVmDesiredState", { desired: "stopped" })).then([set]);
    spec.given([...running, set]).when(c("SetVmDesiredState", { desired: "stopped" })).thenNothing();
    spec.given(running).when(c("SetVmDesiredState", { desired: "running" })).thenNothing();
    const deleting = vmEvent("VmDeletionStarted", { ...base, from: "running", hostId: "h1" });
    spec.given([...running, deleting]).when(c("SetVmDesiredState", { desired: "running" })).thenFails("vm_invalid_state");
  });

  it("delete from any state → deleting → deleted; failed only before running, and a failed VM can be deleted", () => {
    const deleting = vmEvent("VmDeletionStarted", { ...base, from: "running", hostId: "h1" });
    const d = spec.given(running).when(c("DeleteVm")).then([deleting]);
    expect(d.state).toMatchObject({ lifecycle: "deleting", desired: "deleted" });
    spec.given([...running, deleting]).when(c("DeleteVm")).thenNothing();
    spec.given(running).when(c("CompleteVmDeletion")).thenFails("vm_invalid_state");
    const deleted = vmEvent("VmDeleted", { ...base, hostId: "h1" });
    spec.given([...running, deleting]).when(c("CompleteVmDeletion")).then([deleted]);
    spec.given([...running, deleting, deleted]).when(c("CompleteVmDeletion")).thenNothing();
    spec.given([...running, deleting, deleted]).when(c("DeleteVm")).thenNothing();

    const failed = vmEvent("VmFailed", { ...base, from: "placing", reason: "disk image web-1-root does not exist" });
    spec.given([requested, placing]).when(c("FailVm", { reason: "disk image web-1-root does not exist" })).then([failed]);
    spec.given([requested, placing, failed]).when(c("FailVm", { reason: "x" })).thenNothing();
    spec.given(running).when(c("FailVm", { reason: "x" })).thenFails("vm_invalid_state");
    spec.given([requested, placing, failed]).when(c("DeleteVm")).then([vmEvent("VmDeletionStarted", { ...base, from: "failed", hostId: null })]);
  });

  it("runtime observations are recorded on change only (older ones ignored); drift is desired vs observed", () => {
    const obs = (o: "running" | "paused" | "shutdown" | "absent", when = at) => cmd({ type: "RecordRuntimeObservation", vmId: "vm1", observed: o, at: when });
    const r = spec.given(running).when(obs("running")).then([observed("running", null)]);
    expect(vmDrift(r.state)).toBeNull();
    spec.given([...running, observed("running", null)]).when(obs("running", later)).thenNothing();
    spec.given([...running, observed("running", null, later)]).when(obs("absent", at)).thenNothing();
    // died outside Maskin
    const died = spec.given([...running, observed("running", null)]).when(obs("absent", later)).then([observed("absent", "running", later)]);
    expect(vmDrift(died.state)).toEqual({ kind: "not_running", desired: "running", observed: "absent" });
    // desired stopped but still running
    const set = vmEvent("VmDesiredStateSet", { ...base, desired: "stopped" });
    expect(vmDrift(fold(vmDecider, [...running, stopped, set, observed("running", null)]))).toEqual({ kind: "not_stopped", desired: "stopped", observed: "running" });
    expect(vmDrift(fold(vmDecider, [...running, stopped, set, observed("shutdown", null)]))).toBeNull();
    // a process left after delete
    const gone = [...running, vmEvent("VmDeletionStarted", { ...base, from: "running", hostId: "h1" }), vmEvent("VmDeleted", { ...base, hostId: "h1" })];
    expect(vmDrift(fold(vmDecider, [...gone, observed("running", null)]))).toMatchObject({ kind: "process_after_delete" });
    expect(vmDrift(fold(vmDecider, [...gone, observed("absent", null)]))).toBeNull();
    // in transition: no drift
    expect(vmDrift(fold(vmDecider, [requested, placing, placed, observed("absent", null)]))).toBeNull();
    expect(orphanProcesses(["vm9", "vm1", "vm2", "vm9"], new Map([["vm1", "running"], ["vm2", "deleted"]] as const))).toEqual(["vm2", "vm9"]);
  });

  it("property: quota never lets usage pass a limit, and a refusal records nothing", () => {
    fc.assert(
      fc.property(
        fc.record({ vms: fc.option(fc.nat(5), { nil: undefined }), vcpus: fc.option(fc.nat(16), { nil: undefined }), memoryMiB: fc.option(fc.nat(16384), { nil: undefined }) }),
        fc.record({ vms: fc.nat(5), vcpus: fc.nat(16), memoryMiB: fc.nat(16384) }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 8192 }),
        (limits, usage, vcpus, memoryMiB) => {
          const clean = Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined));
          const out = vmDecider.decide(create({ quota: { limits: clean, usage }, resources: { vcpus, memoryMiB, diskGiB: 1 } }), vmDecider.initialState);
          const fits = (limits.vms === undefined || usage.vms + 1 <= limits.vms) && (limits.vcpus === undefined || usage.vcpus + vcpus <= limits.vcpus) && (limits.memoryMiB === undefined || usage.memoryMiB + memoryMiB <= limits.memoryMiB);
          if (fits) expect(Array.isArray(out)).toBe(true);
          else expect(out).toBeInstanceOf(DomainError);
        },
      ),
    );
  });

  it("property: over any command sequence the lifecycle only takes allowed transitions, and deleted is final", () => {
    const allowed: Record<string, string[]> = {
      requested: ["placing", "provisioning", "failed", "deleting"],
      placing: ["placing", "provisioning", "failed", "deleting"],
      provisioning: ["running", "failed", "deleting"],
      running: ["stopped", "deleting"],
      stopped: ["running", "deleting"],
      failed: ["deleting"],
      deleting: ["deleted"],
      deleted: [],
    };
    const commandArb = fc.constantFrom<VmCommandInput[]>(
      [{ type: "StartPlacement", ...base }],
      [{ type: "RecordPlacement", ...base, chosen, rejected }],
      [{ type: "RecordPlacementBlocked", ...base, reason: "capacity", blocking: "soft", rejected }],
      [{ type: "RecordVmStarted", ...base }],
      [{ type: "RecordVmStopped", ...base }],
      [{ type: "DeleteVm", ...base }],
      [{ type: "CompleteVmDeletion", ...base }],
      [{ type: "FailVm", ...base, reason: "x" }],
      [{ type: "SetVmDesiredState", ...base, desired: "stopped" }],
    );
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 30 }), (commands) => {
        let history: VmEvent[] = [requested];
        for (const [input] of commands) {
          const before = fold(vmDecider, history);
          const out = vmDecider.decide(cmd(input!), before);
          if (out instanceof DomainError) continue;
          history = [...history, ...out];
          const after = fold(vmDecider, history);
          if (after.lifecycle !== before.lifecycle) expect(allowed[before.lifecycle!]).toContain(after.lifecycle);
        }
      }),
    );
  });
});
