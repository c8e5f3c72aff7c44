import type { Decider } from "../shared/decider.ts";
import { DomainError } from "../shared/errors.ts";
import type { PoolCommand } from "./commands.ts";
import { poolEvent, type PoolEvent } from "./events.ts";
import { initialPoolState, type PoolState } from "./state.ts";

/**
 * The pool of one datacenter (stream `maskin-pool-<datacenter>`): which host
 * is allocated to which task. One stream per datacenter makes allocation
 * race-free: two tasks that both try to take a host are decided one after the
 * other, and the second is refused with `host_not_free`.
 */

function decide(command: PoolCommand, state: PoolState): readonly PoolEvent[] | DomainError {
  const held = state.allocations.get(command.hostId);
  switch (command.type) {
    case "AllocateHost": {
      if (held) {
        if (held.taskId === command.taskId) return [];
        return new DomainError("host_not_free", `host ${command.hostId} is allocated to task ${held.taskId}`, {
          hostId: command.hostId,
          holderTaskId: held.taskId,
        });
      }
      const { type: _type, ...data } = command;
      return [poolEvent("HostAllocated", data)];
    }
    case "ReturnHostToPool": {
      if (!held) return [];
      return [
        poolEvent("HostReturnedToPool", {
          datacenter: command.datacenter,
          hostId: command.hostId,
          taskId: command.taskId,
          heldByTaskId: held.taskId,
          at: command.at,
        }),
      ];
    }
    default:
      return unreachable(command);
  }
}

function evolve(state: PoolState, event: PoolEvent): PoolState {
  const allocations = new Map(state.allocations);
  switch (event.type) {
    case "HostAllocated": {
      const { datacenter, ...allocation } = event.data;
      allocations.set(allocation.hostId, allocation);
      return { datacenter, allocations };
    }
    case "HostReturnedToPool":
      allocations.delete(event.data.hostId);
      return { datacenter: event.data.datacenter, allocations };
    default:
      return unreachable(event);
  }
}

function unreachable(value: never): never {
  throw new Error(`unhandled pool message ${JSON.stringify(value)}`);
}

export const poolDecider: Decider<PoolCommand, PoolEvent, PoolState> = {
  initialState: initialPoolState,
  decide,
  evolve,
};
