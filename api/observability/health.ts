import type { FastifyInstance } from "fastify";
import type pg from "pg";
import type { ProjectionRunner } from "../../projections/index.ts";

/**
 * Probes (internal: not in the OpenAPI document, not rate limited, no auth):
 * - GET /healthz: the process is up and serving (liveness). Always 200.
 * - GET /readyz: 200 when Postgres answers `select 1` within `postgresTimeoutMs`
 *   and every projection is not `failed` and lags at most `maxLagMs` behind
 *   the log (by the age of its oldest unapplied event); else 503. The body
 *   says which check failed either way:
 *   `{ status: "ready"|"not_ready", checks: { postgres: {...}, projections: [...], relay?: {...} } }`.
 * - The NATS relay (when the server is given one) is reported under
 *   `checks.relay` (state, connected, position, lagEvents) but does not make
 *   the probe fail by default: commands and reads only need Postgres, and
 *   the relay catches up by itself once NATS is back (an instance taken out
 *   of a load balancer for it would only refuse work it can do). Set
 *   `maxRelayLagEvents` to make a relay lagging more than that (or failing to
 *   report) count as not ready.
 */
export interface ReadinessOptions {
  /** Default 10 000 ms. */
  readonly maxLagMs?: number;
  /** Default 2 000 ms. */
  readonly postgresTimeoutMs?: number;
  /** Unset (default): the relay is reported, never fails readiness. */
  readonly maxRelayLagEvents?: number;
}

/** What /readyz and /metrics read from the NATS relay (adapters/nats Relay satisfies it; api/ knows no adapter internals). */
export interface RelayProbe {
  readonly publishedTotal: number;
  status(): Promise<{
    readonly state: string;
    readonly connected: boolean;
    readonly position: string;
    readonly headPosition: string;
    readonly lagEvents: number;
    readonly lagEventsExact: boolean;
    readonly lastError: string | null;
  }>;
}

export function registerHealth(
  app: FastifyInstance,
  deps: { pool: pg.Pool; runner: ProjectionRunner; relay?: RelayProbe },
  options: ReadinessOptions = {},
): void {
  const maxLagMs = options.maxLagMs ?? 10_000;
  const postgresTimeoutMs = options.postgresTimeoutMs ?? 2_000;
  const config = { rateLimit: false as const, access: { level: "public" as const } };
  const schema = { hide: true } as Record<string, unknown>;

  app.get("/healthz", { schema, config }, async () => ({ status: "ok" }));

  app.get("/readyz", { schema, config }, async (request, reply) => {
    const started = Date.now();
    const postgres = await withTimeout(deps.pool.query("select 1"), postgresTimeoutMs)
      .then(() => ({ ok: true, latencyMs: Date.now() - started }))
      .catch((error: unknown) => ({ ok: false, latencyMs: Date.now() - started, error: message(error) }));

    let projections: Array<{ name: string; ok: boolean; state: string; lagEvents: number; lagMs: number; position: string }> = [];
    let projectionError: string | undefined;
    if (postgres.ok) {
      try {
        const statuses = await withTimeout(deps.runner.status(), postgresTimeoutMs);
        projections = statuses.map((s) => ({
          name: s.name,
          ok: s.state !== "failed" && s.lagMs <= maxLagMs,
          state: s.state,
          lagEvents: s.lagEvents,
          lagMs: s.lagMs,
          position: s.position,
        }));
      } catch (error) {
        projectionError = message(error);
      }
    }
    let relay: Record<string, unknown> | undefined;
    let relayOk = true;
    if (deps.relay) {
      const bound = options.maxRelayLagEvents;
      try {
        const s = await withTimeout(deps.relay.status(), postgresTimeoutMs);
        relayOk = bound === undefined || s.lagEvents <= bound;
        // lastError is not served (it may name hosts): see the logs.
        relay = { ok: relayOk, state: s.state, connected: s.connected, position: s.position, lagEvents: s.lagEvents, lagEventsExact: s.lagEventsExact, maxLagEvents: bound ?? null };
      } catch (error) {
        relayOk = bound === undefined;
        relay = { ok: relayOk, error: message(error), maxLagEvents: bound ?? null };
      }
    }
    const ready = postgres.ok && projectionError === undefined && projections.every((p) => p.ok) && relayOk;
    // A failed projection's lastError is not served (the probe answers anyone): see runner.status() and its logs.
    if (!ready) request.log.warn({ postgres, projections, projectionError, relay }, "not ready");
    reply.code(ready ? 200 : 503);
    return {
      status: ready ? "ready" : "not_ready",
      checks: {
        postgres,
        projections: { ok: projectionError === undefined && projections.every((p) => p.ok), maxLagMs, items: projections, ...(projectionError ? { error: projectionError } : {}) },
        ...(relay ? { relay } : {}),
      },
    };
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
