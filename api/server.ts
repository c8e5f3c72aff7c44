import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from "fastify";
import type pg from "pg";
import type { PostgresEventStore } from "../adapters/eventstore/postgres/store.ts";
import { inventoryProjection, tasksProjection, tenancyProjection, type ProjectionRunner } from "../projections/index.ts";
import type { SecretWriter } from "../adapters/secrets/port.ts";
import type { DeadLetters } from "../adapters/dlq/port.ts";
import { CORRELATION_LOG_LABEL, correlationIdOf, echoCorrelationId } from "./http/correlation.ts";
import { bootRoutes, type BootOptions } from "./boot/index.ts";
import { registerProblemHandlers } from "./http/errors.ts";
import type { IdempotencyOptions } from "./http/idempotency.ts";
import { DEFAULT_RATE_LIMIT, registerRateLimit, type RateLimitOptions } from "./http/rate-limit.ts";
import { ReadYourWrites, type ReadYourWritesOptions } from "./http/read-your-writes.ts";
import { registerHealth, type ReadinessOptions, type RelayProbe } from "./observability/health.ts";
import { ApiMetrics, registerMetricsHooks, registerMetricsRoute } from "./observability/metrics.ts";
import { registerOpenApi, registerOpenApiRoute } from "./openapi.ts";
import { InventoryReadModel } from "./read/inventory.ts";
import { TaskReadModel } from "./read/tasks.ts";
import { TenancyReadModel } from "./read/tenancy.ts";
import { restApi } from "./rest/index.ts";
import type { VmConsoleReader } from "./rest/vms.ts";

/** A plugin the composition root hands in (identity, GraphQL): registered on the root instance. */
export interface ServerPlugin {
  register(app: FastifyInstance): Promise<void>;
}

export interface ServerOptions {
  readonly pool: pg.Pool;
  readonly store: PostgresEventStore;
  /** Serves read-your-writes and readiness; it need not drive the projections itself (another process may). */
  readonly runner: ProjectionRunner;
  /** fastify's logger option: false (default), true, or pino options. */
  readonly logger?: FastifyServerOptions["logger"];
  /** Sets request.actor (Bearer JWT in production) and adds the identity routes. */
  readonly auth: ServerPlugin;
  readonly graphql?: ServerPlugin;
  /** Per actor (else per IP). Default 600 per minute. */
  readonly rateLimit?: RateLimitOptions;
  /** Bounds of read-your-writes waits (default 5000 ms each). */
  readonly readYourWrites?: ReadYourWritesOptions;
  /** /readyz thresholds. */
  readonly readiness?: ReadinessOptions;
  /** The NATS relay, when this process runs one: reported by /readyz and /metrics (see health.ts). */
  readonly relay?: RelayProbe;
  readonly idempotency?: IdempotencyOptions;
  /** Where imported BMC passwords are stored (encrypted); without it an inventory import with passwords is refused. Never a reader: the API cannot reveal secrets. */
  readonly secrets?: SecretWriter;
  /** The dead-letter queue (DV_DLQ) behind /v1/dlq; without it those routes answer 503 dlq_unavailable. */
  readonly deadLetters?: DeadLetters;
  /** VM serial console reads over NATS (GET /v1/vms/{id}/console); absent: that route answers 503 console_unavailable. */
  readonly vmConsole?: VmConsoleReader;
  /** The boot service (/boot/: iPXE scripts, boot assets, Talos configs, installer callbacks; see api/boot/index.ts); absent: no /boot/ routes. */
  readonly boot?: BootOptions;
}

/**
 * Composes the HTTP server. Order matters and is the whole point of this file:
 * 1. correlation id (fastify request id, log label `correlationId`, echoed header)
 * 2. problem+json error and not-found handlers (root: every plugin inherits them)
 * 3. metrics hooks, OpenAPI collector (must see every route registered after it)
 * 4. rate limit (route-level onRequest, so it runs after the auth hook and can key by actor)
 * 5. authentication plugin + identity routes (opts.auth), then GraphQL (opts.graphql)
 * 6. every route of this package: probes, /metrics, /v1/openapi.json, /v1 REST,
 *    /boot/ (all after the auth plugin, so an onRoute hook it adds sees them all)
 * The server does not start or stop the runner, the store or the pool: the caller owns them.
 */
export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    genReqId: correlationIdOf,
    logController: new LogController({ requestIdLogLabel: CORRELATION_LOG_LABEL }),
    bodyLimit: 1024 * 1024,
    routerOptions: { ignoreTrailingSlash: true },
  });

  echoCorrelationId(app);
  registerProblemHandlers(app);

  const metrics = new ApiMetrics(options.runner, options.relay);
  registerMetricsHooks(app, metrics);
  await registerOpenApi(app);
  await registerRateLimit(app, options.rateLimit ?? DEFAULT_RATE_LIMIT);

  await options.auth.register(app);
  await app.after();
  if (!app.hasRequestDecorator("actor")) app.decorateRequest("actor", null);
  if (options.graphql) {
    await options.graphql.register(app);
    await app.after();
  }

  registerHealth(app, { pool: options.pool, runner: options.runner, ...(options.relay ? { relay: options.relay } : {}) }, options.readiness);
  registerMetricsRoute(app, metrics);
  registerOpenApiRoute(app);

  const ryw = new ReadYourWrites(options.runner, tenancyProjection.name, options.readYourWrites);
  await app.register(restApi, {
    pool: options.pool,
    store: options.store,
    read: new TenancyReadModel(options.pool),
    ryw,
    metrics,
    tasks: { read: new TaskReadModel(options.pool), ryw: new ReadYourWrites(options.runner, tasksProjection.name, options.readYourWrites) },
    inventory: {
      read: new InventoryReadModel(options.pool),
      ryw: new ReadYourWrites(options.runner, inventoryProjection.name, options.readYourWrites),
      secrets: options.secrets ?? null,
    },
    ...(options.idempotency ? { idempotency: options.idempotency } : {}),
    ...(options.deadLetters ? { deadLetters: options.deadLetters } : {}),
    ...(options.vmConsole ? { vmConsole: options.vmConsole } : {}),
  });
  if (options.boot) await app.register(bootRoutes, { pool: options.pool, store: options.store, ...options.boot });

  await app.ready();
  return app;
}
