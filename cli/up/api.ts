import type { Kysely } from "kysely";
import type pg from "pg";
import { createKysely } from "../../adapters/postgres/connection.ts";
import type { PostgresEventStore } from "../../adapters/eventstore/postgres/store.ts";
import { BootstrapSecretError, ensureBootstrap } from "../../adapters/identity/bootstrap.ts";
import { BootConfigError, bootConfigFromEnv } from "../../adapters/boot/config.ts";
import { BuiltInIssuer } from "../../adapters/identity/issuer.ts";
import { OidcConfigError, OidcVerifier } from "../../adapters/identity/oidc.ts";
import type { NatsLink } from "../../adapters/nats/connection.ts";
import { NatsDeadLetters } from "../../adapters/nats/dead-letters.ts";
import { ConsoleUnavailableError, requestVmConsole } from "../../adapters/workers/hypervisor/console-client.ts";
import type { NatsNamespace } from "../../adapters/nats/namespace.ts";
import { authenticateToken } from "../../api/auth/authenticate.ts";
import { CachedPrincipals, identityServerPlugin } from "../../api/auth/index.ts";
import { graphqlModule } from "../../api/graphql/index.ts";
import type { RelayProbe } from "../../api/observability/health.ts";
import { buildServer } from "../../api/server.ts";
import type { SecretWriter } from "../../adapters/secrets/port.ts";
import { grantsProjection, type ProjectionRunner } from "../../projections/index.ts";
import { CliError, ExitCode } from "../core/errors.ts";

export interface ApiDeps {
  readonly pool: pg.Pool;
  readonly store: PostgresEventStore;
  readonly runner: ProjectionRunner;
  /** The NATS relay, reported by /readyz and /metrics. */
  readonly relay?: RelayProbe;
  /** NATS (dv up's link and namespace): serves the dead-letter queue at /v1/dlq; without it those routes answer 503. */
  readonly nats?: { readonly link: NatsLink; readonly namespace: NatsNamespace };
  /** Stores imported BMC passwords encrypted; the API can write secrets, never read them. */
  readonly secrets?: SecretWriter;
  readonly host: string;
  readonly port: number;
  readonly env: NodeJS.ProcessEnv;
  readonly say: (line: string) => void;
}

export interface StartedApi {
  /** http://host:port as bound (a wildcard host shown as 127.0.0.1). */
  readonly url: string;
  readonly port: number;
  /** Only when newly generated: printed once, never stored in the clear. */
  readonly bootstrapSecret: string | null;
  readonly oidcIssuer: string | null;
  close(): Promise<void>;
}

const GRANT_WAIT_MS = 10_000;

/**
 * Identity (built-in EdDSA issuer, optional OIDC provider, the bootstrap
 * credential), then the HTTP server listening on host:port.
 */
export async function startApi(deps: ApiDeps): Promise<StartedApi> {
  const { env } = deps;
  const db: Kysely<any> = createKysely<any>(deps.pool);
  const localUrl = `http://${displayHost(deps.host)}:${deps.port}`;

  let oidc: OidcVerifier | null;
  try {
    oidc = OidcVerifier.fromEnv(env);
  } catch (error) {
    if (error instanceof OidcConfigError) throw new CliError(ExitCode.usage, error.message);
    throw error;
  }
  const issuer = await BuiltInIssuer.create({
    db,
    // The `iss` of the tokens this API issues: its public URL (DV_ISSUER when it sits behind a proxy).
    issuer: env.DV_ISSUER?.trim() || localUrl,
    keyFile: env.DV_SIGNING_KEY_FILE ?? null,
  });

  let bootstrap;
  try {
    bootstrap = await ensureBootstrap({ db, store: deps.store, envSecret: env.DV_BOOTSTRAP_SECRET ?? null });
  } catch (error) {
    if (error instanceof BootstrapSecretError) throw new CliError(ExitCode.usage, error.message);
    throw error;
  }
  if (bootstrap.state === "rotated_from_env") deps.say("  the bootstrap secret was replaced by DV_BOOTSTRAP_SECRET");
  // The first start grants bootstrap-admin platform-admin by an event: let the grants read model
  // apply it before anyone can log in, so the first token works at once.
  if (bootstrap.position) await deps.runner.waitForPosition(grantsProjection.name, bootstrap.position, GRANT_WAIT_MS);

  // The boot service (/boot/) when an image is configured (DV_BOOT_ASSETS_DIR or DV_TALOS_*_URL; see adapters/boot/config.ts).
  let boot;
  try {
    boot = await bootConfigFromEnv(env);
  } catch (error) {
    if (error instanceof BootConfigError) throw new CliError(ExitCode.usage, error.message);
    throw error;
  }
  if (boot) deps.say(`  boot service: iPXE chain URL <this server>/boot/ipxe?mac=\${net0/mac} serves ${boot.catalog.defaultImage()?.name ?? "no image"}${boot.baseUrl ? ` (machines reach it at ${boot.baseUrl})` : ""}`);

  const principals = new CachedPrincipals({ db });
  const logLevel = env.DV_LOG_LEVEL?.trim() || "warn";
  const app = await buildServer({
    pool: deps.pool,
    store: deps.store,
    runner: deps.runner,
    ...(deps.relay ? { relay: deps.relay } : {}),
    ...(deps.secrets ? { secrets: deps.secrets } : {}),
    ...(boot ? { boot } : {}),
    ...(deps.nats ? { deadLetters: new NatsDeadLetters({ nats: deps.nats.link, namespace: deps.nats.namespace }) } : {}),
    ...(deps.nats ? { vmConsole: vmConsoleOver(deps.nats.link, deps.nats.namespace) } : {}),
    // JSON lines on stderr; warnings and errors only unless DV_LOG_LEVEL says otherwise (500s carry the correlation id the CLI shows).
    logger: logLevel === "silent" ? false : { level: logLevel, stream: process.stderr },
    auth: identityServerPlugin({
      db,
      store: deps.store,
      issuer,
      oidc,
      awaitProjection: (position) => deps.runner.waitForPosition(grantsProjection.name, position, 5_000),
    }),
    graphql: graphqlModule({
      pool: deps.pool,
      db,
      store: deps.store,
      runner: deps.runner,
      authenticateToken: (token) => authenticateToken(token, { issuer, oidc, principals }),
    }),
  });
  try {
    await app.listen({ host: deps.host, port: deps.port });
  } catch (error) {
    await app.close();
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") {
      throw new CliError(ExitCode.usage, `${deps.host}:${deps.port} is in use`, undefined, "choose another port with --port or DV_PORT");
    }
    if ((error as NodeJS.ErrnoException).code === "EADDRNOTAVAIL") {
      throw new CliError(ExitCode.usage, `cannot listen on ${deps.host}: no such address on this machine`);
    }
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : deps.port;
  return {
    url: `http://${displayHost(deps.host)}:${port}`,
    port,
    bootstrapSecret: bootstrap.secret,
    oidcIssuer: oidc?.issuer ?? null,
    close: () => app.close(),
  };
}

/** Where a client on this machine reaches a listener on `host`. */
function displayHost(host: string): string {
  if (host === "0.0.0.0" || host === "::" || host === "") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/** VM console reads through the hypervisor's worker; NATS not connected (yet) is the console being unavailable. */
function vmConsoleOver(link: NatsLink, namespace: NatsNamespace) {
  return async (request: Parameters<typeof requestVmConsole>[2]) => {
    const nc = link.connection;
    if (!nc) throw new ConsoleUnavailableError("NATS is not connected: the VM's hypervisor cannot be asked");
    return requestVmConsole(nc, namespace, request);
  };
}
