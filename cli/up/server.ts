import type { Kysely } from "kysely";
import type pg from "pg";
import { createKysely, createPool } from "../../adapters/postgres/connection.ts";
import { ensureDatabase } from "../../adapters/postgres/database.ts";
import { PostgresEventStore } from "../../adapters/eventstore/postgres/store.ts";
import { NatsLink, natsUrl } from "../../adapters/nats/connection.ts";
import { natsNamespace, type NatsNamespace } from "../../adapters/nats/namespace.ts";
import { Relay } from "../../adapters/nats/relay.ts";
import { workerServices } from "../../adapters/workers/registry.ts";
import { VmReadModel } from "../../api/read/vms.ts";
import { startSagaRuntime, startWorkers, type WorkersHandle } from "./sagas.ts";
import { resolveSecretKey } from "./secret-key.ts";
import { loadSecretKey } from "../../adapters/secrets/key.ts";
import { PostgresSecretStore } from "../../adapters/secrets/store.ts";
import { migrateToLatest } from "../../migrations/index.ts";
import { ProjectionRunner, allProjections, ensureProjectionSchemas } from "../../projections/index.ts";
import { CliError, ExitCode } from "../core/errors.ts";
import type { Io } from "../core/output.ts";
import type { UpOptions } from "./command.ts";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "./embedded-postgres.ts";
import { Lifecycle, ShutdownSignals, maskUrl } from "./lifecycle.ts";
import { startApi } from "./api.ts";

/** How long a clean stop may take before `dv up` gives up waiting and exits anyway. */
const SHUTDOWN_TIMEOUT_MS = 30_000;

/**
 * `dv up`, the composition root: database (embedded or DATABASE_URL),
 * migrations, read models, event store, projection runner, the NATS relay,
 * identity and the HTTP server, in that order; stopped in the reverse order
 * on Ctrl-C or SIGTERM. Returns the exit code.
 */
export async function runUp(options: UpOptions, io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const say = (line: string) => io.out(`${line}\n`);
  const warn = (line: string) => io.err(`${line}\n`);
  const lifecycle = new Lifecycle(warn);
  let embedded: EmbeddedPostgres | undefined;
  const signals = new ShutdownSignals((signal) => {
    warn(`${signal} again: forcing exit`);
    embedded?.stopNow();
    process.exit(signal === "SIGINT" ? 130 : 143);
  }).install();
  const stopRequested = () => signals.stopping;

  try {
    // 1. PostgreSQL
    let url = env.DATABASE_URL?.trim();
    if (url) {
      say(`database: external ${maskUrl(url)}`);
    } else {
      say(`database: embedded PostgreSQL in ${options.dataDir}/postgres`);
      embedded = await startEmbeddedPostgres({ dataDir: options.dataDir, progress: (line) => say(`  ${line}`) });
      const started = embedded;
      lifecycle.defer("embedded PostgreSQL", async () => {
        say("stopping embedded PostgreSQL");
        await started.stop();
      });
      url = embedded.url;
      say(`  ready: ${maskUrl(url)}`);
    }
    if (stopRequested()) return await stop();

    // 2. Schema: database, migrations, read model schemas (one short-lived connection)
    say("migrating the database");
    await reachable(url, () => ensureDatabase(url!));
    const migrationDb = createKysely<unknown>(createPool(url, { max: 1 }));
    try {
      const applied = await migrateToLatest(migrationDb);
      await ensureProjectionSchemas(migrationDb as Kysely<any>, allProjections);
      say(applied.length ? `  applied ${applied.join(", ")}` : "  up to date");
    } finally {
      await migrationDb.destroy();
    }
    if (stopRequested()) return await stop();

    // 3. Event store and read models
    const pool: pg.Pool = createPool(url, { max: 20 });
    lifecycle.defer("the connection pool", () => pool.end());
    const store = new PostgresEventStore({ pool });
    lifecycle.defer("the event store", () => store.close());
    const noted = new Map<string, string>();
    const runner = new ProjectionRunner({
      pool,
      store,
      projections: allProjections,
      onError: (projection, error) => {
        const message = error instanceof Error ? error.message : String(error);
        if (noted.get(projection) === message) return; // retried with backoff; say it once
        noted.set(projection, message);
        warn(`warning: projection ${projection} failed (retrying): ${message}`);
      },
    });
    say("starting projections");
    await runner.start();
    lifecycle.defer("the projection runner", () => runner.stop());
    if (stopRequested()) return await stop();

    // 4. The relay: the event log to NATS JetStream (adapters/nats). NATS being down never stops
    //    `dv up`: commands only need Postgres, and the relay catches up once NATS answers.
    const natsServers = natsUrl(env);
    let namespace: NatsNamespace;
    try {
      // Like `dv worker`: a prefix keeps two installations (or tests) on one NATS apart; empty in production.
      namespace = natsNamespace(env.DV_NATS_NAMESPACE?.trim() ?? "");
    } catch (error) {
      throw new CliError(ExitCode.usage, `DV_NATS_NAMESPACE: ${(error as Error).message}`);
    }
    say(`starting the NATS relay (${maskUrl(natsServers)}${namespace.prefix ? `, namespace ${namespace.prefix}` : ""})`);
    let natsWasUp = false;
    let relayAnnounced = false;
    const nats = new NatsLink({
      servers: natsServers,
      name: "dv-up",
      onStatus: (event) => {
        if (event.type === "connected" && !natsWasUp) {
          natsWasUp = true;
          if (relayAnnounced) say(`NATS reached at ${event.server}: the relay is catching up`);
        } else if (event.type === "disconnected") warn(`warning: NATS connection lost (${event.server}); reconnecting, the relay resumes when it is back`);
        else if (event.type === "reconnected") say(`NATS reconnected (${event.server})`);
      },
    });
    lifecycle.defer("the NATS connection", () => nats.close());
    const relayErrors = new Set<string>();
    const relay = new Relay({
      store,
      pool,
      nats,
      namespace,
      onError: (error) => {
        const message = error instanceof Error ? error.message : String(error);
        if (relayErrors.has(message)) return; // retried with backoff; say each kind once
        relayErrors.add(message);
        warn(`warning: the NATS relay failed a batch (retrying): ${message}`);
      },
    });
    relay.start();
    lifecycle.defer("the NATS relay", () => relay.stop());
    const reached = await Promise.race([nats.ready(), new Promise<null>((resolve) => setTimeout(() => resolve(null), 2_000).unref())]);
    if (!reached) say(`  NATS is not reachable at ${maskUrl(natsServers)}: starting anyway; the relay connects when it is up (commands work meanwhile)`);
    relayAnnounced = true;
    if (stopRequested()) return await stop();

    // 4a. The key for stored secrets (BMC passwords), for the API (to store) and this machine's workers (to reveal).
    const secretKey = await resolveSecretKey(env, options.dataDir);
    say(`secret store key: ${secretKey.source}`);
    const secrets = new PostgresSecretStore(pool, loadSecretKey(secretKey.env)!);
    // Workers in this process reach the same database and key as dv up itself (embedded or not).
    const workerEnv: NodeJS.ProcessEnv = { ...secretKey.env, DATABASE_URL: url };

    // 4b. Sagas (and this machine's workers): they start consuming once NATS answers; tasks wait meanwhile.
    const sagaErrors = new Set<string>();
    const noteSagaError = (error: unknown, context: string) => {
      const message = `${context}: ${error instanceof Error ? error.message : String(error)}`;
      if (sagaErrors.has(message)) return; // retried; say each kind once
      sagaErrors.add(message);
      warn(`warning: ${message}`);
    };
    say("starting the saga runtime");
    const sagas = startSagaRuntime({ store, pool, nats, namespace, deps: { store, vms: new VmReadModel(pool) }, onError: noteSagaError });
    lifecycle.defer("the saga runtime", () => sagas.stop());
    let workers: WorkersHandle | undefined;
    if (options.workers) {
      const services = workerServices().map((s) => s.service);
      say(`starting workers for ${services.join(", ") || "no services"} in datacenter ${options.datacenter}`);
      void sagas.started
        .then(async () => {
          if (stopRequested() || services.length === 0) return;
          workers = await startWorkers({ nats, namespace, datacenter: options.datacenter, services, env: workerEnv, onError: noteSagaError });
        })
        .catch((error: unknown) => noteSagaError(error, "starting workers"));
      lifecycle.defer("the workers", async () => {
        await workers?.stop();
      });
    }

    // 5. Identity and the HTTP API
    say("starting identity and the HTTP API");
    const api = await startApi({ pool, store, runner, relay, secrets, nats: { link: nats, namespace }, host: options.host, port: options.port, env, say: (line) => say(line) });
    lifecycle.defer("the HTTP server", async () => {
      say("stopping the HTTP server (waiting for requests in flight)");
      await api.close();
    });

    const shown = api.url;
    const wildcard = options.host === "0.0.0.0" || options.host === "::";
    say("");
    say(`Dataverket is up: ${shown}${wildcard ? ` (listening on every interface, port ${api.port})` : ""}`);
    say(`  database: ${embedded ? "embedded" : "external"} ${maskUrl(url)}`);
    say(`  NATS:     ${maskUrl(natsServers)}${env.NATS_URL?.trim() ? "" : " (the default; NATS_URL sets it)"}: event relay and sagas ${nats.connected ? "connected" : "waiting for NATS"}`);
    say(`  login:    ${api.oidcIssuer ? `OIDC via ${api.oidcIssuer} (dvid login --api ${shown}), or the bootstrap credential` : "the bootstrap credential (no OIDC provider: DV_OIDC_ISSUER is unset)"}`);
    if (api.bootstrapSecret) {
      say("");
      say("A bootstrap credential was generated. It is shown only this once; it grants platform-admin:");
      say(`  dvid login --api ${shown} --bootstrap-secret ${api.bootstrapSecret}`);
    }
    say("");
    say("Ctrl-C stops (twice forces).");

    await signals.requested;
    return await stop();
  } catch (error) {
    if (error instanceof CliError) warn(`error: ${error.message}${error.hint ? `\nhint: ${error.hint}` : ""}`);
    else warn(`error: dv up failed: ${error instanceof Error ? error.message : String(error)}`);
    await lifecycle.close();
    signals.uninstall();
    return error instanceof CliError ? error.exitCode : ExitCode.server;
  }

  async function stop(): Promise<number> {
    say("shutting down");
    const timer = setTimeout(() => {
      warn(`shutdown did not finish within ${SHUTDOWN_TIMEOUT_MS / 1000} s: forcing exit`);
      embedded?.stopNow();
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    await lifecycle.close();
    clearTimeout(timer);
    signals.uninstall();
    say("stopped");
    return ExitCode.ok;
  }
}

/** Runs `work`, turning "cannot connect" into a clear exit-5 error naming the (masked) URL. */
async function reachable<T>(url: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message = error instanceof Error ? error.message : String(error);
    if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "ETIMEDOUT" || code === "28P01" || code === "28000" || code === "3D000") {
      throw new CliError(ExitCode.server, `cannot use the database at ${maskUrl(url)}: ${message}`, undefined,
        "check DATABASE_URL, or unset it to use the embedded PostgreSQL");
    }
    throw error;
  }
}
