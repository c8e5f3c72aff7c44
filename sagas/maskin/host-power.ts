import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import type { TaskCommandInput } from "../../domain/task/commands.ts";
import { defineSaga, sagaPlan } from "../runtime/types.ts";
import { maskinWork } from "./common.ts";

/**
 * Operator power actions and the BMC check, each one work step of the
 * `maskin` worker in the host's datacenter. The worker reads the BMC first
 * and acts only when needed ("on" when already on does nothing); an
 * unreachable BMC blocks the task on `bmc <hostId>` while it retries.
 * Platform tasks (scope: the platform tenant): the hardware is the platform's.
 */

export const HOST_POWER_KIND = "maskin.host-power";
export const BMC_CHECK_KIND = "maskin.bmc-check";
export const POWER_OPERATIONS = ["on", "off", "cycle", "reset", "soft"] as const;
export type PowerOperation = (typeof POWER_OPERATIONS)[number];
export const HOST_POWER_DEADLINE_MS = 5 * 60_000;

export const hostPowerSaga = defineSaga({
  kind: HOST_POWER_KIND,
  steps: {
    power: maskinWork("Power operation", "power", (task) => ({ operation: String(task.input.operation) })),
  },
});

/** `power status` through the worker: its output is the observed state and the BMC exchange summary. */
export const bmcCheckSaga = defineSaga({
  kind: BMC_CHECK_KIND,
  steps: {
    "power-status": maskinWork("Read the power status from the BMC", "power", () => ({ operation: "status" })),
  },
});

interface HostTaskOptions {
  readonly taskId: string;
  readonly hostId: string;
  readonly hostName?: string;
  readonly datacenter: string;
  readonly correlationId: string;
  readonly now: Date;
  readonly deadlineMs?: number;
}

function platformTask(kind: string, title: string, steps: ReturnType<typeof sagaPlan>, options: HostTaskOptions, input: Record<string, unknown>, maxAttempts: number): TaskCommandInput {
  return {
    type: "CreateTask",
    taskId: options.taskId,
    kind,
    title,
    resource: { type: "host", id: options.hostId },
    scope: { tenantId: PLATFORM_TENANT, projectId: null, environmentId: null },
    steps,
    deadline: new Date(options.now.getTime() + (options.deadlineMs ?? HOST_POWER_DEADLINE_MS)).toISOString(),
    maxAttempts,
    input: { hostId: options.hostId, datacenter: options.datacenter, correlationId: options.correlationId, ...input },
    at: options.now.toISOString(),
  };
}

export function hostPowerTask(options: HostTaskOptions & { readonly operation: PowerOperation }): TaskCommandInput {
  return platformTask(HOST_POWER_KIND, `Power ${options.operation} host ${options.hostName ?? options.hostId}`, sagaPlan(hostPowerSaga), options, { operation: options.operation }, 5);
}

/** One attempt is enough to learn what the BMC says; a few more ride out a flaky network. */
export function bmcCheckTask(options: HostTaskOptions): TaskCommandInput {
  return platformTask(BMC_CHECK_KIND, `Check the BMC of host ${options.hostName ?? options.hostId}`, sagaPlan(bmcCheckSaga), options, {}, 3);
}
