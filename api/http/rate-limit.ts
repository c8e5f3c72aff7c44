import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";

/**
 * Rate limiting per caller: the authenticated actor (kind + id) when there is
 * one, else the client IP, so one noisy token cannot starve others behind
 * the same NAT and anonymous floods are bounded per address. Over the limit:
 * 429 problem `rate_limited` with Retry-After (seconds). In-memory per
 * process (a fleet behind a balancer multiplies the limit by its size).
 * Probes and /metrics opt out (`config.rateLimit: false`).
 *
 * Registered after authentication so the key sees `request.actor`; it runs
 * as a route-level onRequest hook, after the app-level auth hook.
 */
export interface RateLimitOptions {
  /** Requests per window per caller (default 600). */
  readonly max: number;
  /** Window: milliseconds or a string like "1 minute" (default 1 minute). */
  readonly timeWindow: number | string;
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = { max: 600, timeWindow: "1 minute" };

export function rateLimitKey(request: FastifyRequest): string {
  const actor = request.actor ?? null;
  return actor ? `actor:${actor.kind}:${actor.id}` : `ip:${request.ip}`;
}

export async function registerRateLimit(app: FastifyInstance, options: RateLimitOptions = DEFAULT_RATE_LIMIT): Promise<void> {
  await app.register(rateLimit, {
    global: true,
    max: options.max,
    timeWindow: options.timeWindow,
    keyGenerator: rateLimitKey,
    errorResponseBuilder: (_request, context) => {
      const error = new Error(`rate limit of ${context.max} requests per ${context.after} exceeded; retry in ${Math.ceil(context.ttl / 1000)} s`) as Error & {
        statusCode: number;
      };
      error.statusCode = 429;
      return error;
    },
  });
}
