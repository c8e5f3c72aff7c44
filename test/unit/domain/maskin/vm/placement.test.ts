import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { capacityDecider, capacityEvent } from "../../../../../domain/maskin/vm/capacity.ts";
import { candidateFrom, placeVm, type PlacementCandidate, type PlacementRequestInput } from "../../../../../domain/maskin/vm/placement.ts";
import { fold } from "../../../../../domain/shared/decider.ts";

const res = (vcpus: number, memoryMiB: number, diskGiB: number) => ({ vcpus, memoryMiB, diskGiB });
const hv = (name: string, over: Partial<PlacementCandidate> = {}): PlacementCandidate => ({
  hostId: `id-${name}`,
  name,
  datacenter: "osl1",
  cordoned: false,
  allocatable: res(16, 8192, 100),
  used: res(0, 0, 0),
  networks: [],
  groupMembers: {},
  ...over,
});
const request = (over: Partial<PlacementRequestInput> = {}): PlacementRequestInput => ({ vmId: "vm1", datacenter: "osl1", resources: res(2, 1024, 10), ...over });

describe("placeVm", () => {
  it("rejects by datacenter, capacity, cordon, network, anti-affinity (first failing filter), with details; picks the rest", () => {
    const decision = placeVm(request({ networks: ["user", "vlan-7"], antiAffinity: { group: "db", maxPerHypervisor: 1 } }), [
      hv("e", { datacenter: "ber1" }),
      hv("d", { used: res(15, 0, 0), cordoned: true }),
      hv("c", { cordoned: true, networks: ["vlan-7"] }),
      hv("b", { networks: [] }),
      hv("a", { networks: ["vlan-7"], groupMembers: { db: 1 } }),
      hv("f", { networks: ["vlan-7"] }),
    ]);
    expect(decision).toEqual({
      outcome: "placed",
      chosen: { hypervisor: "f", hostId: "id-f", score: { spreadMembers: 0, utilization: 0.125 } },
      rejected: [
        { hypervisor: "a", hostId: "id-a", reason: "anti_affinity", detail: "holds 1 of group db (max 1)" },
        { hypervisor: "b", hostId: "id-b", reason: "network", detail: "network attachment not available: vlan-7" },
        { hypervisor: "c", hostId: "id-c", reason: "cordoned", detail: "cordoned: no new VMs" },
        { hypervisor: "d", hostId: "id-d", reason: "capacity", detail: "vcpus 2 > 1 free" },
        { hypervisor: "e", hostId: "id-e", reason: "datacenter", detail: "in ber1, not osl1" },
      ],
    });
  });

  it("spreads: fewest members of the spread group first, then least loaded, then name", () => {
    const spread = placeVm(request({ spreadGroup: "web" }), [hv("a", { groupMembers: { web: 2 } }), hv("b", { groupMembers: { web: 1 }, used: res(8, 4096, 50) }), hv("c", { groupMembers: { web: 1 } })]);
    expect(spread).toMatchObject({ outcome: "placed", chosen: { hypervisor: "c" } });
    const loaded = placeVm(request(), [hv("a", { used: res(0, 4096, 0) }), hv("b")]);
    expect(loaded).toMatchObject({ chosen: { hypervisor: "b" } });
    const tie = placeVm(request(), [hv("b"), hv("a")]);
    expect(tie).toMatchObject({ chosen: { hypervisor: "a" } });
  });

  it("overcommit is in the candidate's allocatable (capacity state): 2 physical cores take 8 vCPUs at 4:1", () => {
    const state = fold(capacityDecider, [
      capacityEvent("HypervisorRegistered", { hostId: "h1", name: "hv1", datacenter: "osl1", capacity: res(2, 4096, 50), overcommit: { cpu: 4, memory: 1, disk: 1 }, allocatable: res(8, 4096, 50), at: "t" }),
      capacityEvent("CapacityReserved", { hostId: "h1", vmId: "x", resources: res(6, 1024, 10), groups: ["web"], taskId: "t", at: "t" }),
    ]);
    const c = candidateFrom(state, ["vlan-7"]);
    expect(c).toMatchObject({ hostId: "h1", name: "hv1", used: res(6, 1024, 10), groupMembers: { web: 1 }, networks: ["vlan-7"] });
    expect(placeVm(request({ resources: res(2, 1024, 10) }), [c])).toMatchObject({ outcome: "placed" });
    expect(placeVm(request({ resources: res(3, 1024, 10) }), [c])).toMatchObject({ outcome: "unplaceable", reason: "capacity" });
  });

  it("nothing fits: capacity (soft) when any hypervisor of the datacenter lacks room or is cordoned; otherwise the hard reason", () => {
    expect(placeVm(request({ networks: ["vlan-9"] }), [hv("a", { used: res(16, 0, 0) }), hv("b", { networks: [] })])).toMatchObject({ outcome: "unplaceable", reason: "capacity", blocking: "soft" });
    expect(placeVm(request(), [hv("a", { cordoned: true })])).toMatchObject({ reason: "capacity", blocking: "soft" });
    expect(placeVm(request(), [hv("a", { datacenter: "ber1" })])).toMatchObject({ reason: "no_hypervisor", blocking: "hard", rejected: [{ reason: "datacenter" }] });
    expect(placeVm(request(), [])).toEqual({ outcome: "unplaceable", reason: "no_hypervisor", blocking: "hard", rejected: [] });
    expect(placeVm(request({ networks: ["vlan-9"] }), [hv("a")])).toMatchObject({ reason: "network", blocking: "hard" });
    expect(placeVm(request({ antiAffinity: { group: "g" } }), [hv("a", { groupMembers: { g: 1 } })])).toMatchObject({ reason: "anti_affinity", blocking: "soft" });
  });

  it("6 VMs with anti-affinity (max 2 per hypervisor) over 3 hypervisors are spread 2/2/2; the 7th is unplaceable", () => {
    let hvs = [hv("hv1"), hv("hv2"), hv("hv3")];
    const counts: Record<string, number> = {};
    for (let i = 0; i < 6; i++) {
      const d = placeVm(request({ vmId: `vm${i}`, antiAffinity: { group: "app", maxPerHypervisor: 2 }, spreadGroup: "app" }), hvs);
      if (d.outcome !== "placed") throw new Error(`vm${i} not placed`);
      counts[d.chosen.hypervisor] = (counts[d.chosen.hypervisor] ?? 0) + 1;
      hvs = hvs.map((h) => (h.name === d.chosen.hypervisor ? { ...h, used: { vcpus: h.used.vcpus + 2, memoryMiB: h.used.memoryMiB + 1024, diskGiB: h.used.diskGiB + 10 }, groupMembers: { app: (h.groupMembers.app ?? 0) + 1 } } : h));
    }
    expect(counts).toEqual({ hv1: 2, hv2: 2, hv3: 2 });
    expect(placeVm(request({ vmId: "vm7", antiAffinity: { group: "app", maxPerHypervisor: 2 } }), hvs)).toMatchObject({ outcome: "unplaceable", reason: "anti_affinity" });
  });

  const candidateArb = fc.record({
    hostId: fc.constantFrom("h1", "h2", "h3", "h4", "h5", "h6"),
    name: fc.constantFrom("a", "b", "c", "d"),
    datacenter: fc.constantFrom("osl1", "ber1"),
    cordoned: fc.boolean(),
    allocatable: fc.record({ vcpus: fc.integer({ min: 0, max: 16 }), memoryMiB: fc.integer({ min: 0, max: 8192 }), diskGiB: fc.integer({ min: 0, max: 100 }) }),
    used: fc.record({ vcpus: fc.integer({ min: 0, max: 16 }), memoryMiB: fc.integer({ min: 0, max: 8192 }), diskGiB: fc.integer({ min: 0, max: 100 }) }),
    networks: fc.subarray(["vlan-1", "vlan-2"]),
    groupMembers: fc.record({ g: fc.integer({ min: 0, max: 3 }) }),
  });
  const requestArb = fc.record({
    vmId: fc.constant("vm"),
    datacenter: fc.constantFrom("osl1", "ber1"),
    resources: fc.record({ vcpus: fc.integer({ min: 1, max: 8 }), memoryMiB: fc.integer({ min: 1, max: 4096 }), diskGiB: fc.integer({ min: 0, max: 50 }) }),
    networks: fc.subarray(["user", "vlan-1", "vlan-2"]),
    antiAffinity: fc.option(fc.record({ group: fc.constant("g"), maxPerHypervisor: fc.integer({ min: 1, max: 3 }) }), { nil: null }),
    spreadGroup: fc.option(fc.constant("g"), { nil: null }),
  });

  it("property: deterministic — any permutation of the candidates gives the same decision", () => {
    fc.assert(
      fc.property(requestArb, fc.array(candidateArb, { maxLength: 8 }).chain((cs) => fc.tuple(fc.constant(cs), fc.shuffledSubarray(cs, { minLength: cs.length, maxLength: cs.length }))), (req, [cs, permuted]) => {
        expect(placeVm(req, permuted)).toEqual(placeVm(req, cs));
      }),
      { numRuns: 500 },
    );
  });

  it("property: never places on a rejected hypervisor; the chosen one passes every filter; every candidate is either chosen or rejected once", () => {
    fc.assert(
      fc.property(requestArb, fc.uniqueArray(candidateArb, { selector: (c) => c.hostId, maxLength: 6 }), (req, cs) => {
        const d = placeVm(req, cs);
        expect(d.rejected.length + (d.outcome === "placed" ? 1 : 0)).toBe(cs.length);
        if (d.outcome !== "placed") return;
        expect(d.rejected.map((r) => r.hostId)).not.toContain(d.chosen.hostId);
        const c = cs.find((x) => x.hostId === d.chosen.hostId)!;
        expect(c.datacenter).toBe(req.datacenter);
        expect(c.cordoned).toBe(false);
        for (const k of ["vcpus", "memoryMiB", "diskGiB"] as const) expect(c.used[k] + req.resources[k]).toBeLessThanOrEqual(c.allocatable[k]);
        for (const n of req.networks) if (n !== "user") expect(c.networks).toContain(n);
        if (req.antiAffinity) expect(c.groupMembers.g).toBeLessThan(req.antiAffinity.maxPerHypervisor);
      }),
      { numRuns: 500 },
    );
  });
});
