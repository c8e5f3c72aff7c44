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

/** Where a worker takes work from: its datacenter, or one target in it (`osl1/<hypervisor host id>`). */
export function workerLocation(datacenter: string, target?: string | null): string {
  return target ? `${datacenter}/${target}` : datacenter;
}

export function workerDependency(service: string, datacenter: string, target?: string | null): string {
  return `worker ${service}@${workerLocation(datacenter, target)}`;
}

export function workerHealth(input: {
  readonly service: string;
  readonly datacenter: string;
  readonly target?: string | null;
  readonly lastSeen: Date | null;
  readonly watchingSince: Date;
  readonly now: Date;
  readonly policy?: HealthPolicy;
}): WorkerHealth {
  const bound = healthBoundMs(input.policy);
  const where = input.target ? `${input.datacenter} (${input.target})` : input.datacenter;
  const now = input.now.getTime();
  if (input.lastSeen && now - input.lastSeen.getTime() <= bound) return { up: true };
  if (!input.lastSeen) {
    if (now - input.watchingSince.getTime() <= bound) return { up: true }; // not long enough to tell
    return { up: false, reason: `no heartbeat from ${input.service} workers in ${where}: never seen (watching since ${input.watchingSince.toISOString()})` };
  }
  return { up: false, reason: `no heartbeat from ${input.service} workers in ${where} since ${input.lastSeen.toISOString()}` };
}
