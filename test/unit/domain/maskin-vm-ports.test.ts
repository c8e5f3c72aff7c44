import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_SSH_PORT_RANGE,
  lowestFreePort,
  PortCommandSchema,
  portEvent,
  portPoolDecider,
  portPoolStreamId,
  portsOfVm,
  type PortCommandInput,
  type PortEvent,
  type PortPoolState,
} from "../../../domain/maskin/vm/index.ts";
import { fold } from "../../../domain/shared/decider.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import { deciderSpec } from "../support/decider-spec.ts";

const spec = deciderSpec(portPoolDecider);
const at = "2026-12-01T10:00:00.000Z";
const H = "hv-1";
const cmd = (input: PortCommandInput) => PortCommandSchema.parse(input);
const allocate = (vmId: string, nicIndex = 0) => cmd({ type: "AllocateSshPort", hostId: H, vmId, nicIndex, taskId: `t-${vmId}`, at });
const release = (vmId: string) => cmd({ type: "ReleaseSshPorts", hostId: H, vmId, taskId: `d-${vmId}`, at });
const allocated = (vmId: string, port: number, nicIndex = 0) => portEvent("SshPortAllocated", { hostId: H, vmId, nicIndex, port, taskId: `t-${vmId}`, at });
const released = (vmId: string, port: number, nicIndex = 0) => portEvent("SshPortReleased", { hostId: H, vmId, nicIndex, port, taskId: `d-${vmId}`, at });
const range = (first: number, last: number) => cmd({ type: "ConfigureSshPortRange", hostId: H, range: { first, last }, at });

describe("SSH port pool decider", () => {
  it("stream id; default range 22000-22999", () => {
    expect(portPoolStreamId("hv-1")).toBe("maskin-ports-hv-1");
    expect(portPoolDecider.initialState.range).toEqual(DEFAULT_SSH_PORT_RANGE);
    expect(DEFAULT_SSH_PORT_RANGE).toEqual({ first: 22000, last: 22999 });
  });

  it("given an empty pool, when a VM asks for NIC 0, then it gets the first port of the range", () => {
    spec.given([]).when(allocate("vm-a")).then([allocated("vm-a", 22000)]);
  });

  it("takes the lowest free port: a released port is reused before higher ones", () => {
    spec.given([allocated("vm-a", 22000), allocated("vm-b", 22001)]).when(allocate("vm-c")).then([allocated("vm-c", 22002)]);
    spec.given([allocated("vm-a", 22000), allocated("vm-b", 22001), released("vm-a", 22000)]).when(allocate("vm-c")).then([allocated("vm-c", 22000)]);
  });

  it("is idempotent per (VM, NIC); another NIC of the same VM gets its own port", () => {
    spec.given([allocated("vm-a", 22000)]).when(allocate("vm-a")).thenNothing();
    spec.given([allocated("vm-a", 22000)]).when(allocate("vm-a", 1)).then([allocated("vm-a", 22001, 1)]);
  });

  it("releases every port of the VM; releasing again (or a VM that holds none) changes nothing", () => {
    const { state } = spec.given([allocated("vm-a", 22000), allocated("vm-b", 22001), allocated("vm-a", 22002, 1)]).when(release("vm-a")).then([released("vm-a", 22000), released("vm-a", 22002, 1)]);
    expect(portsOfVm(state, "vm-a")).toEqual([]);
    expect(portsOfVm(state, "vm-b")).toEqual([{ nicIndex: 0, port: 22001 }]);
    spec.given([allocated("vm-a", 22000), released("vm-a", 22000)]).when(release("vm-a")).thenNothing();
    spec.given([]).when(release("vm-x")).thenNothing();
  });

  it("refuses when the range is full (ssh_ports_exhausted)", () => {
    const configured = portEvent("SshPortRangeConfigured", { hostId: H, first: 30000, last: 30001, at });
    spec.given([configured, allocated("vm-a", 30000), allocated("vm-b", 30001)]).when(allocate("vm-c")).thenFails("ssh_ports_exhausted", { hostId: H, range: { first: 30000, last: 30001 } });
  });

  it("a configured range is used; a range that would leave a held port outside is refused; the same range is a no-op", () => {
    spec.given([]).when(range(30000, 30009)).then([portEvent("SshPortRangeConfigured", { hostId: H, first: 30000, last: 30009, at })]);
    spec.given([portEvent("SshPortRangeConfigured", { hostId: H, first: 30000, last: 30009, at })]).when(allocate("vm-a")).then([allocated("vm-a", 30000)]);
    spec.given([allocated("vm-a", 22000), allocated("vm-b", 22001)]).when(range(22001, 22100)).thenFails("ssh_port_range_conflict", { outside: [22000] });
    spec.given([]).when(range(22000, 22999)).thenNothing();
    expect(() => range(22010, 22000)).toThrow();
  });

  it("property: any sequence of allocations and releases never gives one port to two holders, always picks the lowest free port, and is deterministic", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("allocate" as const), vm: fc.integer({ min: 0, max: 7 }), nic: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constant("release" as const), vm: fc.integer({ min: 0, max: 7 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.integer({ min: 3, max: 30 }), (ops, size) => {
        const run = () => {
          const history: PortEvent[] = [portEvent("SshPortRangeConfigured", { hostId: H, first: 40000, last: 40000 + size - 1, at })];
          let state: PortPoolState = fold(portPoolDecider, history);
          for (const o of ops) {
            const command = o.kind === "allocate" ? allocate(`vm-${o.vm}`, o.nic) : release(`vm-${o.vm}`);
            const before = state;
            const outcome = portPoolDecider.decide(command, state);
            if (outcome instanceof DomainError) {
              expect(outcome.code).toBe("ssh_ports_exhausted");
              expect(before.held.size).toBe(size);
              continue;
            }
            if (command.type === "AllocateSshPort" && outcome.length === 1) {
              const event = outcome[0]!;
              if (event.type !== "SshPortAllocated") throw new Error("expected SshPortAllocated");
              expect(event.data.port).toBe(lowestFreePort(before));
              expect(before.held.has(event.data.port)).toBe(false);
            }
            history.push(...outcome);
            state = fold(portPoolDecider, history);
            // One holder per (VM, NIC), one (VM, NIC) per port, all inside the range.
            const holders = [...state.held.values()].map((h) => `${h.vmId}/${h.nicIndex}`);
            expect(new Set(holders).size).toBe(holders.length);
            for (const port of state.held.keys()) expect(port >= 40000 && port < 40000 + size).toBe(true);
          }
          return history;
        };
        expect(run()).toEqual(run());
      }),
    );
  });
});
