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
 *   `{ status: "ready"|"not_ready", checks: { postgres: {...}, projections: [...] } }`.
 */
export interface ReadinessOptions {
  /** Default 10 000 ms. */
  readonly maxLagMs?: number;
  /** Default 2 000 ms. */
  readonly postgresTimeoutMs?: number;
}

export function registerHealth(app: FastifyInstance, deps: { pool: pg.Pool; runner: ProjectionRunner }, options: ReadinessOptions = {}): void {
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
    const ready = postgres.ok && projectionError === undefined && projections.every((p) => p.ok);
    // A failed projection's lastError is not served (the probe answers anyone): see runner.status() and its logs.
    if (!ready) request.log.warn({ postgres, projections, projectionError }, "not ready");
    reply.code(ready ? 200 : 503);
    return {
      status: ready ? "ready" : "not_ready",
      checks: {
        postgres,
        projections: { ok: projectionError === undefined && projections.every((p) => p.ok), maxLagMs, items: projections, ...(projectionError ? { error: projectionError } : {}) },
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
