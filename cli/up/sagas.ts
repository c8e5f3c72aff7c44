import { jetstreamManager } from "@nats-io/jetstream";
import { NatsLink, natsUrl } from "../../adapters/nats/connection.ts";
import type pg from "pg";
import type { EventStore } from "../../adapters/eventstore/port.ts";
import { DEFAULT_NAMESPACE, natsNamespace, type NatsNamespace } from "../../adapters/nats/namespace.ts";
import { ensureStreams } from "../../adapters/nats/topology.ts";
import { workerService, workerServices } from "../../adapters/workers/registry.ts";
// Registers the maskin worker service (BMC actions and the power observer) for `dv worker` and `dv up`.
import "../../adapters/workers/maskin/service.ts";
// Registers the hypervisor worker service (QEMU VMs: vm-start/stop/reboot/status).
import "../../adapters/workers/hypervisor/service.ts";
import type { WorkerCommandOptions } from "../commands/worker.ts";
import { CliError, ExitCode } from "../core/errors.ts";
import { BootConfigError, bootConfigFromEnv, type BootConfig } from "../../adapters/boot/config.ts";
import { PostgresEventStore } from "../../adapters/eventstore/postgres/store.ts";
import { createPool } from "../../adapters/postgres/connection.ts";
import { MASKIN_SERVICE } from "../../adapters/workers/maskin/service.ts";
import { HYPERVISOR_SERVICE } from "../../adapters/workers/hypervisor/service.ts";
import { parseListenAddress, startBootServer, type ListenAddress, type StartedBootServer } from "./boot-server.ts";
import type { Io } from "../core/output.ts";
import { ShutdownSignals } from "./lifecycle.ts";
import { JetStreamSagaBus } from "../../adapters/workers/saga-bus.ts";
import { startWorker, type RunningWorker, type StartWorkerOptions, type WorkHandler } from "../../adapters/workers/worker.ts";
import { allSagas } from "../../sagas/index.ts";
import { SagaRuntime, type SagaRuntimeOptions } from "../../sagas/runtime/runtime.ts";
import type { TaskSaga } from "../../sagas/runtime/types.ts";

export interface StartSagaRuntimeOptions<Deps = unknown> {
  readonly store: EventStore;
  readonly pool: pg.Pool;
  readonly nats: NatsLink;
  readonly namespace?: NatsNamespace;
  /** Default: sagas/index.ts allSagas. */
  readonly sagas?: readonly TaskSaga<Deps>[];
  readonly deps?: Deps;
  /** Tuning (consumer names, ack wait, maxDeliver, backoff, health policy, ...). */
  readonly tuning?: Omit<SagaRuntimeOptions<Deps>, "store" | "pool" | "bus" | "sagas" | "deps" | "onError">;
  readonly onError?: (error: unknown, context: string) => void;
}

export interface SagaRuntimeHandle {
  /** Null until NATS answered for the first time. */
  readonly runtime: SagaRuntime<any> | null;
  /** Resolves once the runtime runs (NATS reached, streams ensured). */
  readonly started: Promise<void>;
  stop(): Promise<void>;
}

/**
 * The saga runtime for `dv up` (cli/up/server.ts calls this after the event
 * store and the relay). Returns at once: while NATS is unreachable the
 * runtime waits for it (commands keep working; tasks simply do not move),
 * ensures the JetStream streams, then starts consuming.
 */
export function startSagaRuntime<Deps = unknown>(options: StartSagaRuntimeOptions<Deps>): SagaRuntimeHandle {
  let runtime: SagaRuntime<Deps> | null = null;
  let stopped = false;
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  const started = (async () => {
    const nc = await options.nats.ready();
    if (!nc || stopped) return;
    for (;;) {
      try {
        await ensureStreams(await jetstreamManager(nc), { namespace });
        break;
      } catch (error) {
        options.onError?.(error, "ensuring JetStream streams");
        if (stopped) return;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
    if (stopped) return;
    runtime = new SagaRuntime<Deps>({
      ...options.tuning,
      store: options.store,
      pool: options.pool,
      bus: new JetStreamSagaBus({ nc, namespace, onError: options.onError }),
      sagas: options.sagas ?? (allSagas as readonly TaskSaga<Deps>[]),
      ...(options.deps !== undefined ? { deps: options.deps } : {}),
      ...(options.onError ? { onError: options.onError } : {}),
    });
    runtime.start();
  })();
  return {
    get runtime() {
      return runtime;
    },
    started,
    async stop() {
      stopped = true;
      await started.catch(() => {});
      await runtime?.stop();
    },
  };
}

export interface StartWorkersOptions {
  readonly nats: NatsLink;
  readonly namespace?: NatsNamespace;
  readonly datacenter: string;
  /** Registered worker services (adapters/workers/registry.ts) by name, or handlers given directly. */
  readonly services: ReadonlyArray<string | { readonly service: string; readonly handlers: Readonly<Record<string, WorkHandler>> }>;
  readonly env?: NodeJS.ProcessEnv;
  /** The host these workers run on (`dv worker --host`): the hypervisor service serves that hypervisor. */
  readonly target?: string;
  readonly tuning?: Pick<StartWorkerOptions, "heartbeatIntervalMs" | "concurrency" | "ackWaitMs" | "maxDeliver" | "workerId">;
  readonly onError?: (error: unknown, context: string) => void;
}

export interface WorkersHandle {
  readonly workers: readonly RunningWorker[];
  stop(): Promise<void>;
}

/** Workers for `dv worker` (and `dv up` when it runs local workers). Throws for a service nobody registered. */
export async function startWorkers(options: StartWorkersOptions): Promise<WorkersHandle> {
  const nc = await options.nats.ready();
  if (!nc) throw new Error("the NATS connection was closed before it connected");
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  const workers: RunningWorker[] = [];
  const closers: Array<() => Promise<void>> = [];
  try {
    for (const entry of options.services) {
      let service: string;
      let handlers: Readonly<Record<string, WorkHandler>>;
      let ackWaitMs: number | undefined;
      let target: string | undefined;
      if (typeof entry === "string") {
        const registered = workerService(entry);
        if (!registered) throw new Error(`no worker service ${JSON.stringify(entry)} is registered`);
        service = entry;
        const context = {
          datacenter: options.datacenter,
          env: options.env ?? process.env,
          nats: { nc, namespace },
          ...(options.target !== undefined ? { target: options.target } : {}),
        };
        const serviceOptions = registered.workerOptions?.(context);
        ackWaitMs = serviceOptions?.ackWaitMs;
        target = serviceOptions?.target;
        handlers = await registered.handlers(context);
        if (registered.close) closers.push(registered.close.bind(registered));
      } else {
        service = entry.service;
        handlers = entry.handlers;
      }
      ackWaitMs = options.tuning?.ackWaitMs ?? ackWaitMs;
      workers.push(
        await startWorker({
          ...options.tuning,
          ...(ackWaitMs !== undefined ? { ackWaitMs } : {}),
          nc,
          namespace,
          service,
          datacenter: options.datacenter,
          ...(target !== undefined ? { target } : {}),
          handlers,
          ...(options.onError ? { onError: options.onError } : {}),
        }),
      );
    }
  } catch (error) {
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(closers.map((close) => close()));
    throw error;
  }
  return {
    workers,
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
      await Promise.all(closers.map((close) => close().catch(() => {})));
    },
  };
}

/**
 * `dv worker`: runs until SIGINT/SIGTERM; returns the exit code.
 *
 * With `--boot-listen HOST:PORT` (env DV_BOOT_LISTEN; maskin only) it also
 * serves the boot service (`/boot/` and `/healthz`, cli/up/boot-server.ts)
 * from this process: same image and Talos settings as `dv up`
 * (adapters/boot/config.ts), reading the inventory read model and the host
 * streams through DATABASE_URL. It listens before NATS is reached: a machine
 * netbooting needs Postgres, not NATS.
 */
export async function runWorker(options: WorkerCommandOptions, io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const say = (line: string) => io.out(`${line}\n`);
  const warn = (line: string) => io.err(`${line}\n`);
  const known = new Set(workerServices().map((s) => s.service));
  const unknown = options.service.filter((s) => !known.has(s));
  if (unknown.length) {
    warn(`error: no worker service ${unknown.join(", ")}; known: ${[...known].join(", ") || "none"}`);
    return ExitCode.usage;
  }
  const bootSettings = await bootServerSettings(options, env);
  if (options.service.includes(HYPERVISOR_SERVICE) && !options.host?.trim()) {
    throw new CliError(ExitCode.usage, "--service hypervisor needs --host HOSTID (the inventory host this worker runs VMs on)");
  }
  const vmDir = options.vmDir?.trim();
  const serviceEnv = vmDir ? { ...env, DV_VM_RUN_DIR: vmDir } : env;
  const signals = new ShutdownSignals(() => process.exit(130)).install();
  let boot: { readonly server: StartedBootServer; close(): Promise<void> } | null = null;
  const servers = options.natsUrl?.trim() || natsUrl(env);
  const link = new NatsLink({
    servers,
    name: `dv-worker-${options.service.join("+")}-${options.datacenter}`,
    onStatus: (event) => warn(`nats: ${event.type}${"server" in event ? ` ${event.server}` : ` ${event.error}`}`),
  });
  try {
    if (bootSettings) {
      boot = await openBootServer(bootSettings, env);
      say(
        `boot service: ${boot.server.url}/boot/ipxe?mac=\${net0/mac} serves ${bootSettings.config.catalog.defaultImage()?.name ?? "no image"}` +
          `${bootSettings.config.baseUrl ? ` (machines reach it at ${bootSettings.config.baseUrl})` : ""}`,
      );
    }
    say(`worker: ${options.service.join(", ")} in ${options.datacenter}, NATS ${servers}; waiting for NATS`);
    const ready = await Promise.race([link.ready(), signals.requested.then(() => null)]);
    if (!ready) return ExitCode.ok;
    const handle = await startWorkers({
      nats: link,
      namespace: natsNamespace(options.namespace ?? ""),
      datacenter: options.datacenter,
      services: options.service,
      env: serviceEnv,
      ...(options.host?.trim() ? { target: options.host.trim() } : {}),
      tuning: { heartbeatIntervalMs: options.heartbeatMs, concurrency: options.concurrency },
      onError: (error, context) => warn(`${context}: ${error instanceof Error ? error.message : String(error)}`),
    });
    say(`ready: ${handle.workers.map((w) => w.workerId).join(", ")}`);
    const signal = await signals.requested;
    say(`${signal}: stopping`);
    await handle.stop();
    return ExitCode.ok;
  } finally {
    signals.uninstall();
    await boot?.close();
    await link.close();
  }
}

interface BootServerSettings {
  readonly listen: ListenAddress;
  readonly config: BootConfig;
  readonly databaseUrl: string;
}

/** --boot-listen checked before anything starts: null without it; a usage CliError when it cannot be served. */
async function bootServerSettings(options: WorkerCommandOptions, env: NodeJS.ProcessEnv): Promise<BootServerSettings | null> {
  const text = options.bootListen?.trim();
  if (!text) return null;
  if (!options.service.includes(MASKIN_SERVICE)) {
    throw new CliError(ExitCode.usage, "--boot-listen serves Maskin's boot service: run it with --service maskin");
  }
  const listen = parseListenAddress(text);
  let config: BootConfig | null;
  try {
    config = await bootConfigFromEnv(env);
  } catch (error) {
    if (error instanceof BootConfigError) throw new CliError(ExitCode.usage, error.message);
    throw error;
  }
  if (!config) {
    throw new CliError(
      ExitCode.usage,
      "--boot-listen: no boot image is configured",
      undefined,
      "set DV_BOOT_ASSETS_DIR, or DV_TALOS_KERNEL_URL and DV_TALOS_INITRAMFS_URL (see api/boot/README.md)",
    );
  }
  const databaseUrl = env.DATABASE_URL?.trim();
  if (!databaseUrl) throw new CliError(ExitCode.usage, "--boot-listen needs DATABASE_URL (the inventory and the host streams live there)");
  return { listen, config, databaseUrl };
}

/** The boot server on its own pool and event store (closed with it). */
async function openBootServer(settings: BootServerSettings, env: NodeJS.ProcessEnv): Promise<{ readonly server: StartedBootServer; close(): Promise<void> }> {
  const pool = createPool(settings.databaseUrl, { max: 5 });
  const store = new PostgresEventStore({ pool });
  const logLevel = env.DV_LOG_LEVEL?.trim() || "warn";
  try {
    const server = await startBootServer({
      ...settings.listen,
      pool,
      store,
      boot: settings.config,
      logger: logLevel === "silent" ? false : { level: logLevel, stream: process.stderr },
    });
    return {
      server,
      async close() {
        await server.close();
        await store.close();
        await pool.end();
      },
    };
  } catch (error) {
    await store.close();
    await pool.end();
    throw error;
  }
}
