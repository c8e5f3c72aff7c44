import { describe, expect, it } from "vitest";
import { capacityDecider, capacityEvent, CapacityCommandSchema, type CapacityCommandInput } from "../../../../../domain/maskin/vm/capacity.ts";
import { deciderSpec } from "../../../support/decider-spec.ts";

/** RecordHypervisorOrphans: the hypervisor observer's QEMU processes with no VM record, recorded when the set changes. */

const spec = deciderSpec(capacityDecider);
const at = "2026-12-01T10:00:00.000Z";
const later = "2026-12-01T10:00:05.000Z";
const cmd = (input: CapacityCommandInput) => CapacityCommandSchema.parse(input);
const registered = capacityEvent("HypervisorRegistered", {
  hostId: "h1",
  name: "hv-a",
  datacenter: "osl1",
  capacity: { vcpus: 4, memoryMiB: 8192, diskGiB: 100 },
  overcommit: { cpu: 4, memory: 1, disk: 1 },
  allocatable: { vcpus: 16, memoryMiB: 8192, diskGiB: 100 },
  at,
});
const record = (vmIds: string[], when = later) => cmd({ type: "RecordHypervisorOrphans", hostId: "h1", vmIds, at: when });
const observed = (vmIds: string[], previous: string[], when = later) => capacityEvent("HypervisorOrphansObserved", { hostId: "h1", vmIds, previous, at: when });

describe("hypervisor orphans", () => {
  it("records a new set sorted and deduplicated, with the previous one", () => {
    const { state } = spec.given([registered]).when(record(["vm-b", "vm-a", "vm-b"])).then([observed(["vm-a", "vm-b"], [])]);
    expect(state.orphans).toEqual({ vmIds: ["vm-a", "vm-b"], at: later });
  });

  it("records nothing when the set is unchanged (in any order), nor for no orphans at first", () => {
    spec.given([registered, observed(["vm-a", "vm-b"], [])]).when(record(["vm-b", "vm-a"], "2026-12-01T10:00:10.000Z")).thenNothing();
    spec.given([registered]).when(record([])).thenNothing();
  });

  it("records the set going empty, and ignores an observation older than the last", () => {
    spec.given([registered, observed(["vm-a"], [])]).when(record([], "2026-12-01T10:00:10.000Z")).then([observed([], ["vm-a"], "2026-12-01T10:00:10.000Z")]);
    spec.given([registered, observed(["vm-a"], [])]).when(record(["vm-c"], at)).thenNothing();
  });

  it("is refused for an unregistered hypervisor", () => {
    spec.given([]).when(record(["vm-a"])).thenFails("hypervisor_not_registered");
  });
});
