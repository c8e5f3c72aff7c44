import type { FastifyInstance } from "fastify";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ProjectionRunner, ProjectionState } from "../../projections/index.ts";
import type { RelayProbe } from "./health.ts";

/**
 * Prometheus metrics at GET /metrics (text exposition; internal, not in the
 * OpenAPI document, not rate limited). One registry per server, so two
 * servers in one process (tests) never share counters.
 *
 * - dv_http_requests_total{method,route,status}
 * - dv_http_request_duration_seconds{method,route,status} (histogram)
 *   `route` is the route template (`/v1/tenants/:tenantId`), "unmatched" for
 *   404s without a route, so label cardinality stays bounded.
 * - dv_events_appended_total{type}: events appended by this API's commands
 * - dv_projection_lag_events{projection}, dv_projection_lag_seconds{projection},
 *   dv_projection_state{projection,state} (1 for the current state): read from
 *   runner.status() at scrape time
 * - dv_relay_lag_events, dv_relay_published_total: the NATS relay's unpublished
 *   events (counted up to its probe limit) and the events it published, when
 *   the server is given a relay
 * - the prom-client default process metrics (dv_ prefix)
 */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<"method" | "route" | "status">;
  readonly httpDuration: Histogram<"method" | "route" | "status">;
  readonly eventsAppended: Counter<"type">;

  constructor(runner: ProjectionRunner, relay?: RelayProbe) {
    const registers = [this.registry];
    this.httpRequests = new Counter({
      name: "dv_http_requests_total",
      help: "HTTP requests answered, by route template and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.httpDuration = new Histogram({
      name: "dv_http_request_duration_seconds",
      help: "Time from request to response, by route template and status",
      labelNames: ["method", "route", "status"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.eventsAppended = new Counter({
      name: "dv_events_appended_total",
      help: "Events appended to the event store by commands this API ran",
      labelNames: ["type"],
      registers,
    });

    const states: ProjectionState[] = ["catching_up", "live", "rebuilding", "failed", "standby", "stopped"];
    let pending: ReturnType<ProjectionRunner["status"]> | null = null;
    // One status() per scrape, shared by the three gauges.
    const status = () => (pending ??= runner.status().finally(() => setTimeout(() => (pending = null), 0)));
    new Gauge({
      name: "dv_projection_lag_events",
      help: "Events in the log the projection has not applied (counted up to the runner's probe limit)",
      labelNames: ["projection"],
      registers,
      async collect() {
        for (const s of await status().catch(() => [])) this.set({ projection: s.name }, s.lagEvents);
      },
    });
    new Gauge({
      name: "dv_projection_lag_seconds",
      help: "Age of the oldest event the projection has not applied; 0 at the head",
      labelNames: ["projection"],
      registers,
      async collect() {
        for (const s of await status().catch(() => [])) this.set({ projection: s.name }, s.lagMs / 1000);
      },
    });
    new Gauge({
      name: "dv_projection_state",
      help: "1 for the projection's current state in this process, 0 for the others",
      labelNames: ["projection", "state"],
      registers,
      async collect() {
        for (const s of await status().catch(() => [])) {
          for (const state of states) this.set({ projection: s.name, state }, s.state === state ? 1 : 0);
        }
      },
    });
    if (relay) {
      new Gauge({
        name: "dv_relay_lag_events",
        help: "Events in the log the NATS relay has not published yet (counted up to its probe limit)",
        registers,
        async collect() {
          const status = await relay.status().catch(() => null);
          if (status) this.set(status.lagEvents);
        },
      });
      let counted = 0;
      new Counter({
        name: "dv_relay_published_total",
        help: "Events the NATS relay in this process published to JetStream (stored, copies not counted)",
        registers,
        collect() {
          const total = relay.publishedTotal;
          if (total > counted) this.inc(total - counted);
          counted = total;
        },
      });
    }
    collectDefaultMetrics({ register: this.registry, prefix: "dv_" });
  }
}

/** Counts and times every response (register early: the hook is app-wide). */
export function registerMetricsHooks(app: FastifyInstance, metrics: ApiMetrics): void {
  app.addHook("onResponse", async (request, reply) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? "unmatched",
      status: String(reply.statusCode),
    };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
  });
}

export function registerMetricsRoute(app: FastifyInstance, metrics: ApiMetrics): void {
  app.get(
    "/metrics",
    { schema: { hide: true } as Record<string, unknown>, config: { rateLimit: false, access: { level: "public" } } },
    async (_request, reply) => {
      reply.type(metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );
}
