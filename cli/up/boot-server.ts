import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from "fastify";
import type pg from "pg";
import type { BootConfig } from "../../adapters/boot/config.ts";
import { bootRoutes } from "../../api/boot/index.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { CORRELATION_LOG_LABEL, correlationIdOf, echoCorrelationId } from "../../api/http/correlation.ts";
import { registerProblemHandlers } from "../../api/http/errors.ts";
import { DEFAULT_RATE_LIMIT, registerRateLimit, type RateLimitOptions } from "../../api/http/rate-limit.ts";
import { CliError, ExitCode } from "../core/errors.ts";

/**
 * The boot service alone (`dv worker --service maskin --boot-listen HOST:PORT`):
 * a fastify instance with only the `/boot/` routes (api/boot/) and `/healthz`,
 * for a Maskin worker that sits in the datacenter's provisioning network,
 * where machines reach it and perhaps not the API.
 *
 * Same behaviour as the boot routes `dv up` serves (problem+json errors,
 * correlation ids, per-IP rate limit), but no authentication, no /v1, no
 * GraphQL: every route here is public and called by machines. What it needs
 * is what the routes read and write: the inventory read model (a host by
 * MAC, in the same database; `dv up`'s projections keep it current) and the
 * host streams in the event store.
 */
export interface BootServerOptions {
  readonly pool: pg.Pool;
  readonly store: CommandStore;
  readonly boot: BootConfig;
  readonly logger?: FastifyServerOptions["logger"];
  /** Per IP; default 600 per minute, like the API's anonymous callers. */
  readonly rateLimit?: RateLimitOptions;
  /** Clock of the recorded facts (tests). */
  readonly now?: () => Date;
}

export async function buildBootServer(options: BootServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    genReqId: correlationIdOf,
    logController: new LogController({ requestIdLogLabel: CORRELATION_LOG_LABEL }),
    bodyLimit: 1024 * 1024,
    routerOptions: { ignoreTrailingSlash: true },
    // On close, end every connection, keep-alive ones included: a machine's (or a client's) idle
    // keep-alive socket must not keep a stopping worker alive (fastify advertises 72 s keep-alive).
    forceCloseConnections: true,
  });
  echoCorrelationId(app);
  registerProblemHandlers(app);
  await registerRateLimit(app, options.rateLimit ?? DEFAULT_RATE_LIMIT);
  app.get("/healthz", { config: { rateLimit: false } }, async () => ({ status: "ok", service: "boot" }));
  await app.register(bootRoutes, {
    pool: options.pool,
    store: options.store,
    ...options.boot,
    ...(options.now ? { now: options.now } : {}),
  });
  await app.ready();
  return app;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (all addresses). Port 0 picks a free
 * one (tests). Throws a usage CliError for anything else.
 */
export function parseListenAddress(text: string): ListenAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new CliError(ExitCode.usage, `--boot-listen ${JSON.stringify(text)}: expected HOST:PORT, [IPv6]:PORT or :PORT`);
  }
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

export interface StartedBootServer {
  /** http://host:port as bound (a wildcard host shown as 127.0.0.1). */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Builds the boot server and listens; address problems are usage errors. */
export async function startBootServer(options: BootServerOptions & ListenAddress): Promise<StartedBootServer> {
  const app = await buildBootServer(options);
  try {
    await app.listen({ host: options.host, port: options.port });
  } catch (error) {
    await app.close();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new CliError(ExitCode.usage, `--boot-listen ${options.host}:${options.port} is in use`);
    if (code === "EADDRNOTAVAIL") throw new CliError(ExitCode.usage, `--boot-listen: cannot listen on ${options.host}: no such address on this machine`);
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const shown = options.host === "0.0.0.0" || options.host === "::" || options.host === "" ? "127.0.0.1" : options.host.includes(":") ? `[${options.host}]` : options.host;
  return { url: `http://${shown}:${port}`, port, close: () => app.close() };
}
