import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  allocatableOf,
  capacityDecider,
  capacityEvent,
  CapacityCommandSchema,
  drainReport,
  freeCapacity,
  type CapacityCommandInput,
  type CapacityEvent,
} from "../../../../../domain/maskin/vm/capacity.ts";
import { hypervisorStreamId } from "../../../../../domain/maskin/vm/stream.ts";
import { fold } from "../../../../../domain/shared/decider.ts";
import { DomainError } from "../../../../../domain/shared/errors.ts";
import { deciderSpec } from "../../../support/decider-spec.ts";

const spec = deciderSpec(capacityDecider);
const at = "2026-12-01T10:00:00.000Z";
const cmd = (input: CapacityCommandInput) => CapacityCommandSchema.parse(input);
const register = (vcpus = 4, memoryMiB = 8192, diskGiB = 100) =>
  cmd({ type: "RegisterHypervisor", hostId: "h1", name: "hv-a", datacenter: "osl1", capacity: { vcpus, memoryMiB, diskGiB }, at });
const registered = (vcpus = 4, memoryMiB = 8192, diskGiB = 100) =>
  capacityEvent("HypervisorRegistered", {
    hostId: "h1",
    name: "hv-a",
    datacenter: "osl1",
    capacity: { vcpus, memoryMiB, diskGiB },
    overcommit: { cpu: 4, memory: 1, disk: 1 },
    allocatable: { vcpus: vcpus * 4, memoryMiB, diskGiB },
    at,
  });
const res = (vcpus: number, memoryMiB = 1024, diskGiB = 10) => ({ vcpus, memoryMiB, diskGiB });
const reserve = (vmId: string, r = res(2), groups: string[] = []) => cmd({ type: "ReserveCapacity", hostId: "h1", vmId, resources: r, groups, taskId: `t-${vmId}`, at });
const reserved = (vmId: string, r = res(2), groups: string[] = []) => capacityEvent("CapacityReserved", { hostId: "h1", vmId, resources: r, groups, taskId: `t-${vmId}`, at });
const release = (vmId: string) => cmd({ type: "ReleaseCapacity", hostId: "h1", vmId, taskId: `r-${vmId}`, at });

describe("Hypervisor capacity decider", () => {
  it("stream id and overcommit defaults (CPU 4:1, memory 1:1, disk 1:1)", () => {
    expect(hypervisorStreamId("h1")).toBe("maskin-hv-h1");
    expect(allocatableOf(res(3, 1000, 7), { cpu: 1.5, memory: 1, disk: 2 })).toEqual(res(4, 1000, 14));
    const { state } = spec.given([]).when(register()).then([registered()]);
    expect(freeCapacity(state)).toEqual(res(16, 8192, 100));
  });

  it("registering again: same is a no-op, changed capacity is recorded, another datacenter is refused", () => {
    spec.given([registered()]).when(register()).thenNothing();
    spec
      .given([registered()])
      .when(register(8))
      .then([
        capacityEvent("HypervisorCapacityChanged", {
          hostId: "h1",
          name: "hv-a",
          capacity: res(8, 8192, 100),
          overcommit: { cpu: 4, memory: 1, disk: 1 },
          allocatable: res(32, 8192, 100),
          at,
        }),
      ]);
    spec
      .given([registered()])
      .when(cmd({ type: "RegisterHypervisor", hostId: "h1", name: "hv-a", datacenter: "ber1", capacity: res(4, 8192, 100), at }))
      .thenFails("hypervisor_datacenter_mismatch");
  });

  it("reserves within allocatable; the same VM again is a no-op; a different reservation for it is refused", () => {
    const { state } = spec.given([registered()]).when(reserve("vm1", res(2), ["web", "web"])).then([reserved("vm1", res(2), ["web"])]);
    expect(freeCapacity(state)).toEqual(res(14, 7168, 90));
    spec.given([registered(), reserved("vm1")]).when(reserve("vm1")).thenNothing();
    spec.given([registered(), reserved("vm1")]).when(reserve("vm1", res(4))).thenFails("reservation_mismatch", { vmId: "vm1" });
    spec.given([]).when(reserve("vm1")).thenFails("hypervisor_not_registered");
  });

  it("refuses what does not fit, naming each short resource", () => {
    spec
      .given([registered(1, 2048, 10)])
      .when(reserve("vm1", res(5, 4096, 10)))
      .thenFails("insufficient_capacity", {
        shortfall: [
          { resource: "vcpus", requested: 5, free: 4 },
          { resource: "memoryMiB", requested: 4096, free: 2048 },
        ],
      });
    // exactly the last slot fits
    spec.given([registered(1, 2048, 10)]).when(reserve("vm1", res(4, 2048, 10))).then([reserved("vm1", res(4, 2048, 10))]);
  });

  it("release is idempotent and frees the slot", () => {
    const released = capacityEvent("CapacityReleased", { hostId: "h1", vmId: "vm1", resources: res(2), taskId: "r-vm1", at });
    const { state } = spec.given([registered(), reserved("vm1")]).when(release("vm1")).then([released]);
    expect(freeCapacity(state)).toEqual(res(16, 8192, 100));
    spec.given([registered(), reserved("vm1"), released]).when(release("vm1")).thenNothing();
    spec.given([registered()]).when(release("nope")).thenNothing();
  });

  it("cordon blocks new reservations (not repeats of existing ones); uncordon allows them again", () => {
    const cordoned = capacityEvent("HypervisorCordoned", { hostId: "h1", reason: "disk swap", at });
    spec.given([registered()]).when(cmd({ type: "CordonHypervisor", hostId: "h1", reason: "disk swap", at })).then([cordoned]);
    spec.given([registered(), cordoned]).when(cmd({ type: "CordonHypervisor", hostId: "h1", reason: "again", at })).thenNothing();
    spec.given([registered(), cordoned]).when(reserve("vm1")).thenFails("hypervisor_cordoned", { reason: "disk swap" });
    spec.given([registered(), reserved("vm1"), cordoned]).when(reserve("vm1")).thenNothing();
    const uncordoned = capacityEvent("HypervisorUncordoned", { hostId: "h1", at });
    spec.given([registered(), cordoned]).when(cmd({ type: "UncordonHypervisor", hostId: "h1", at })).then([uncordoned]);
    spec.given([registered(), cordoned, uncordoned]).when(reserve("vm1")).then([reserved("vm1")]);
    spec.given([registered()]).when(cmd({ type: "UncordonHypervisor", hostId: "h1", at })).thenNothing();
  });

  it("drain cordons and reports the VMs that must move; the same drain task again is a no-op", () => {
    const history = [registered(), reserved("vm2", res(1), ["db"]), reserved("vm1")];
    const drain = cmd({ type: "DrainHypervisor", hostId: "h1", taskId: "d1", reason: "maintenance", at });
    const { state } = spec
      .given(history)
      .when(drain)
      .then([
        capacityEvent("HypervisorCordoned", { hostId: "h1", reason: "drain: maintenance", at }),
        capacityEvent("HypervisorDrainRequested", {
          hostId: "h1",
          taskId: "d1",
          reason: "maintenance",
          vms: [
            { vmId: "vm1", resources: res(2), groups: [] },
            { vmId: "vm2", resources: res(1), groups: ["db"] },
          ],
          at,
        }),
      ]);
    expect(drainReport(state)).toMatchObject({ cordoned: true, vms: [{ vmId: "vm1" }, { vmId: "vm2" }], used: res(3, 2048, 20) });
    const after = [...history, ...(capacityDecider.decide(drain, fold(capacityDecider, history)) as CapacityEvent[])];
    spec.given(after).when(drain).thenNothing();
    spec.given(after).when(reserve("vm3")).thenFails("hypervisor_cordoned");
  });

  it("decide alone does not prevent double booking: two decides on the same state both accept the last slot", () => {
    // This is why reservations go through one stream with an expected version (property below).
    const state = fold(capacityDecider, [registered(1, 2048, 10), reserved("vm0", res(2, 1024, 5))]);
    expect(capacityDecider.decide(reserve("a", res(2, 1024, 5)), state)).not.toBeInstanceOf(DomainError);
    expect(capacityDecider.decide(reserve("b", res(2, 1024, 5)), state)).not.toBeInstanceOf(DomainError);
  });

  it("property: under any interleaving of concurrent reservers (read, decide, append with expected version, retry on conflict) no slot is taken twice", () => {
    const demands = fc.array(fc.record({ vcpus: fc.integer({ min: 1, max: 6 }), memoryMiB: fc.integer({ min: 1, max: 3 }).map((m) => m * 512), diskGiB: fc.integer({ min: 0, max: 20 }) }), {
      minLength: 2,
      maxLength: 6,
    });
    fc.assert(
      fc.property(demands, fc.array(fc.nat(), { minLength: 10, maxLength: 120 }), fc.boolean(), (wanted, schedule, withRelease) => {
        // the one stream: events + version; append checks the expected version like the event store does
        let stream: CapacityEvent[] = [registered(2, 4096, 40)];
        const append = (expected: number, events: readonly CapacityEvent[]): boolean => {
          if (stream.length !== expected) return false;
          stream = [...stream, ...events];
          return true;
        };
        type Client = { vmId: string; phase: "read" | "decide" | "done"; version: number; outcome?: "reserved" | DomainError };
        const clients: Client[] = wanted.map((_, i) => ({ vmId: `vm${i}`, phase: "read", version: 0 }));
        let conflicts = 0;
        for (const pick of [...schedule, ...Array(wanted.length * 4 * (wanted.length + 1)).fill(0).map((_, i) => i)]) {
          const live = clients.filter((c) => c.phase !== "done");
          if (live.length === 0) break;
          const client = live[pick % live.length]!;
          const index = clients.indexOf(client);
          if (client.phase === "read") {
            client.version = stream.length;
            client.phase = "decide";
            continue;
          }
          const state = fold(capacityDecider, stream.slice(0, client.version));
          const outcome = capacityDecider.decide(reserve(client.vmId, wanted[index]!), state);
          if (outcome instanceof DomainError) {
            client.outcome = outcome;
            client.phase = "done";
            continue;
          }
          if (append(client.version, outcome)) {
            client.outcome = "reserved";
            client.phase = "done";
            if (withRelease && index === 0) append(stream.length, capacityDecider.decide(release(client.vmId), fold(capacityDecider, stream)) as CapacityEvent[]);
          } else {
            conflicts++;
            client.phase = "read"; // concurrency error: re-read and decide again
          }
        }
        // replay the stream: at every point reserved <= allocatable, and each VM is reserved at most once at a time
        let state = fold(capacityDecider, []);
        for (const event of stream) {
          if (event.type === "CapacityReserved") expect(state.reservations.has(event.data.vmId)).toBe(false);
          state = capacityDecider.evolve(state, event);
          const free = freeCapacity(state);
          expect(free.vcpus).toBeGreaterThanOrEqual(0);
          expect(free.memoryMiB).toBeGreaterThanOrEqual(0);
          expect(free.diskGiB).toBeGreaterThanOrEqual(0);
        }
        // a refused client was refused for capacity, and really did not fit in what was left when it decided last
        for (const c of clients) {
          if (c.outcome instanceof DomainError) expect(c.outcome.code).toBe("insufficient_capacity");
        }
        expect(conflicts).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 400 },
    );
  });
});
