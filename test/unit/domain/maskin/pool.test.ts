import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PoolCommandSchema, poolDecider, poolEvent, poolStreamId, type PoolCommand, type PoolEvent } from "../../../../domain/maskin/index.ts";
import { fold } from "../../../../domain/shared/decider.ts";
import { DomainError } from "../../../../domain/shared/errors.ts";
import { deciderSpec } from "../../support/decider-spec.ts";

const spec = deciderSpec(poolDecider);
const DC = "osl1";
const at = "2026-12-01T10:00:00.000Z";
const allocate = (hostId: string, taskId: string): PoolCommand =>
  PoolCommandSchema.parse({ type: "AllocateHost", datacenter: DC, hostId, taskId, tenantId: "a", projectId: "p", environmentId: null, at });
const giveBack = (hostId: string, taskId: string): PoolCommand => PoolCommandSchema.parse({ type: "ReturnHostToPool", datacenter: DC, hostId, taskId, at });
const allocated = (hostId: string, taskId: string) =>
  poolEvent("HostAllocated", { datacenter: DC, hostId, taskId, tenantId: "a", projectId: "p", environmentId: null, at });

describe("Pool decider", () => {
  it("stream id", () => expect(poolStreamId("osl1")).toBe("maskin-pool-osl1"));

  it("allocates a free host; the same task again is a no-op; another task is refused with the holder", () => {
    const { state } = spec.given([]).when(allocate("h1", "t1")).then([allocated("h1", "t1")]);
    expect(state.allocations.get("h1")?.taskId).toBe("t1");
    spec.given([allocated("h1", "t1")]).when(allocate("h1", "t1")).thenNothing();
    spec.given([allocated("h1", "t1")]).when(allocate("h1", "t2")).thenFails("host_not_free", { holderTaskId: "t1", hostId: "h1" });
    spec.given([allocated("h1", "t1")]).when(allocate("h2", "t2")).then([allocated("h2", "t2")]);
  });

  it("returns a host (by any task, e.g. the release task); returning a free host is a no-op", () => {
    const returned = poolEvent("HostReturnedToPool", { datacenter: DC, hostId: "h1", taskId: "r1", heldByTaskId: "t1", at });
    spec.given([allocated("h1", "t1")]).when(giveBack("h1", "r1")).then([returned]);
    spec.given([allocated("h1", "t1"), returned]).when(giveBack("h1", "r1")).thenNothing();
    spec.given([]).when(giveBack("h1", "r1")).thenNothing();
    spec.given([allocated("h1", "t1"), returned]).when(allocate("h1", "t2")).then([allocated("h1", "t2")]);
  });

  it("property: two tasks can never both hold a host", () => {
    const hosts = ["h1", "h2"];
    const tasks = ["t1", "t2", "t3"];
    const commandArb = fc.oneof(
      fc.tuple(fc.constantFrom(...hosts), fc.constantFrom(...tasks)).map(([h, t]) => allocate(h, t)),
      fc.tuple(fc.constantFrom(...hosts), fc.constantFrom(...tasks)).map(([h, t]) => giveBack(h, t)),
    );
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 50 }), (commands) => {
        let history: PoolEvent[] = [];
        // a model: host -> holder
        const holder = new Map<string, string>();
        for (const command of commands) {
          const outcome = poolDecider.decide(command, fold(poolDecider, history));
          if (command.type === "AllocateHost") {
            const held = holder.get(command.hostId);
            if (held && held !== command.taskId) {
              expect(outcome).toBeInstanceOf(DomainError);
              continue;
            }
            holder.set(command.hostId, command.taskId);
          } else {
            holder.delete(command.hostId);
          }
          if (outcome instanceof DomainError) throw outcome;
          history = [...history, ...outcome];
          const state = fold(poolDecider, history);
          for (const h of hosts) expect(state.allocations.get(h)?.taskId).toBe(holder.get(h));
          // every allocation appended was of a free host
          let held = new Map<string, string>();
          for (const e of history) {
            if (e.type === "HostAllocated") {
              expect(held.has(e.data.hostId)).toBe(false);
              held.set(e.data.hostId, e.data.taskId);
            } else held.delete(e.data.hostId);
          }
          held = new Map();
        }
      }),
      { numRuns: 300 },
    );
  });
});
