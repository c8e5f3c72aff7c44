import { performance } from "node:perf_hooks";
import {
  candidateFrom,
  capacityDecider,
  initialHypervisorState,
  placeVm,
  type CapacityCommand,
  type HypervisorState,
} from "../domain/maskin/vm/index.ts";
import { log, percentile, round, type BenchResult } from "./support.ts";

/**
 * Placement only (issue 6: "200 VMs placed in ≤ 1 s"): the pure decision the
 * VM saga makes, over hypervisor states folded by the capacity decider, with
 * each placed VM's reservation decided and applied before the next VM is
 * placed (as the saga does), so the later decisions see the earlier ones.
 * No I/O: this is the control plane's own cost per decision.
 */
export async function placementBenchmarks(options: { vms?: number; hypervisors?: number; rounds?: number } = {}): Promise<BenchResult[]> {
  const vms = options.vms ?? 200;
  const hypervisors = options.hypervisors ?? 24;
  const rounds = options.rounds ?? 7;
  const at = new Date().toISOString();
  const timings: number[] = [];
  let placed = 0;
  for (let round_ = 0; round_ < rounds; round_ += 1) {
    const states = new Map<string, HypervisorState>();
    for (let i = 0; i < hypervisors; i += 1) {
      const hostId = `hv-${String(i).padStart(3, "0")}`;
      states.set(hostId, apply(initialHypervisorState, { type: "RegisterHypervisor", hostId, name: hostId, datacenter: i % 6 === 5 ? "bgo1" : "osl1", capacity: { vcpus: 32, memoryMiB: 131_072, diskGiB: 2_000 }, overcommit: { cpu: 4, memory: 1, disk: 1 }, at }));
    }
    const started = performance.now();
    placed = 0;
    for (let v = 0; v < vms; v += 1) {
      const vmId = `vm-${round_}-${v}`;
      const request = {
        vmId,
        datacenter: "osl1",
        resources: { vcpus: 2 + (v % 3), memoryMiB: 2048 * (1 + (v % 4)), diskGiB: 20 },
        networks: ["user"],
        antiAffinity: v % 5 === 0 ? { group: `aa-${v % 40}`, maxPerHypervisor: 1 } : null,
        spreadGroup: `tier-${v % 7}`,
      };
      const decision = placeVm(request, [...states.values()].map((s) => candidateFrom(s, ["user"])));
      if (decision.outcome !== "placed") continue;
      const groups = [request.spreadGroup, ...(request.antiAffinity ? [request.antiAffinity.group] : [])];
      const hostId = decision.chosen.hostId;
      states.set(hostId, apply(states.get(hostId)!, { type: "ReserveCapacity", hostId, vmId, resources: request.resources, groups, taskId: vmId, at }));
      placed += 1;
    }
    timings.push(performance.now() - started);
  }
  const p50 = percentile(timings, 50);
  log(`placement: ${placed}/${vms} VMs placed over ${hypervisors} hypervisors; p50 ${round(p50)} ms of ${rounds} rounds`);
  return [
    {
      name: `place ${vms} VMs (placement + reservation, ${hypervisors} hypervisors)`,
      value: round(p50),
      unit: "ms",
      target: 1_000,
      better: "lower",
      note: `${placed} placed; median of ${rounds} rounds`,
    },
  ];
}

function apply(state: HypervisorState, command: CapacityCommand): HypervisorState {
  const events = capacityDecider.decide(command, state);
  if (!Array.isArray(events)) throw events;
  return events.reduce(capacityDecider.evolve, state);
}
