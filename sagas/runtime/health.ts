/**
 * Whether a worker service in a datacenter is up, from its heartbeats.
 * Pure: the runtime feeds it the last heartbeat it saw and the time it
 * started watching (a runtime that just started has seen nothing yet, which
 * is not evidence of a dead worker until a whole bound has passed).
 */
export interface HealthPolicy {
  /** Workers send a heartbeat this often (default 2000 ms). */
  readonly heartbeatIntervalMs: number;
  /** Missed intervals before the worker counts as down (default 3). */
  readonly missedHeartbeats: number;
}

export const DEFAULT_HEALTH: HealthPolicy = { heartbeatIntervalMs: 2_000, missedHeartbeats: 3 };

export function healthBoundMs(policy: HealthPolicy = DEFAULT_HEALTH): number {
  return policy.heartbeatIntervalMs * policy.missedHeartbeats;
}

export type WorkerHealth = { readonly up: true } | { readonly up: false; readonly reason: string };

export function workerDependency(service: string, datacenter: string): string {
  return `worker ${service}@${datacenter}`;
}

export function workerHealth(input: {
  readonly service: string;
  readonly datacenter: string;
  readonly lastSeen: Date | null;
  readonly watchingSince: Date;
  readonly now: Date;
  readonly policy?: HealthPolicy;
}): WorkerHealth {
  const bound = healthBoundMs(input.policy);
  const now = input.now.getTime();
  if (input.lastSeen && now - input.lastSeen.getTime() <= bound) return { up: true };
  if (!input.lastSeen) {
    if (now - input.watchingSince.getTime() <= bound) return { up: true }; // not long enough to tell
    return { up: false, reason: `no heartbeat from ${input.service} workers in ${input.datacenter}: never seen (watching since ${input.watchingSince.toISOString()})` };
  }
  return { up: false, reason: `no heartbeat from ${input.service} workers in ${input.datacenter} since ${input.lastSeen.toISOString()}` };
}
