/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"): the delay before retry n (n >= 1) is uniform in
 * [0, min(maxMs, baseMs * 2^(n-1))). Full jitter spreads a herd of retries
 * that failed together (a worker restart) instead of synchronising them.
 */
export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1_000, maxMs: 60_000 };

export function backoffCeilingMs(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(n - 1, 52));
}

/** `random` returns [0, 1) (Math.random); injected by tests. */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeilingMs(attempt, policy));
}

export function retryAt(now: Date, attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): Date {
  return new Date(now.getTime() + backoffDelayMs(attempt, policy, random));
}
