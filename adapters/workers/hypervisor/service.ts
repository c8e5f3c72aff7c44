import { homedir } from "node:os";
import { join } from "node:path";
import { PostgresEventStore } from "../../eventstore/postgres/store.ts";
import { createKysely, createPool } from "../../postgres/connection.ts";
import { QemuRuntime } from "../../qemu/runtime.ts";
import { ImageStore } from "../../qemu/store.ts";
import { registerWorkerService, type WorkerServiceContext } from "../registry.ts";
import type { WorkHandler } from "../worker.ts";
import { serveVmConsole } from "./console.ts";
import { createHypervisorHandlers, type HypervisorMachine } from "./handlers.ts";
import { DEFAULT_VM_OBSERVE_INTERVAL_MS, VmObserver } from "./observer.ts";

/**
 * The `hypervisor` worker service: `dv worker --service hypervisor
 * --datacenter osl1 --host <hostId>` on each machine that runs VMs (one
 * worker per hypervisor host; README.md here is the contract). Actions
 * (handlers.ts) over the QEMU runtime (adapters/qemu, always `-accel tcg`)
 * and the image/disk store; with a host it also serves VM consoles
 * (console.ts) and runs the VM runtime observer (observer.ts).
 *
 * Environment:
 * - `DV_VM_RUN_DIR` (`dv worker --vm-dir`): the run root, one directory per
 *   VM (pidfile, QMP sockets, serial log, overlay, seed) and `store/` (images,
 *   disk images). Keep it short: unix socket paths must stay under 108
 *   bytes. Default `<data dir>/vm`, the data dir being `dv up`'s
 *   (`DV_DATA_DIR`, else /var/lib/dv as root, else ~/.local/share/dv).
 * - `DATABASE_URL`: the control plane's Postgres, for the observer (reads the
 *   vms read model, records observations); without it there is no observer.
 * - `DV_VM_OBSERVE_INTERVAL_MS`: observer interval (default 5 000; 0 turns it off).
 */

export const HYPERVISOR_SERVICE = "hypervisor";

/** DV_VM_RUN_DIR, or `<data dir>/vm` (the data dir as cli/up/command.ts defaultDataDir picks it). */
export function hypervisorRunDir(env: NodeJS.ProcessEnv, uid: number | undefined = process.getuid?.()): string {
  const explicit = env.DV_VM_RUN_DIR?.trim();
  if (explicit) return explicit;
  const dataDir = env.DV_DATA_DIR?.trim() || (uid === 0 ? "/var/lib/dv" : join(env.XDG_DATA_HOME?.trim() || join(homedir(), ".local", "share"), "dv"));
  return join(dataDir, "vm");
}

/** The runtime on the run root and the store in its `store/`. */
export function openHypervisorMachine(env: NodeJS.ProcessEnv): HypervisorMachine & { runtime: QemuRuntime } {
  const runtime = new QemuRuntime({ runRoot: hypervisorRunDir(env) });
  return { runtime, store: new ImageStore({ root: join(runtime.runRoot, "store") }) };
}

/** DV_VM_OBSERVE_INTERVAL_MS or the default; throws for a value that is not a number of milliseconds. */
export function vmObserveIntervalMs(env: NodeJS.ProcessEnv): number {
  const text = env.DV_VM_OBSERVE_INTERVAL_MS?.trim();
  if (!text) return DEFAULT_VM_OBSERVE_INTERVAL_MS;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 0) throw new Error(`DV_VM_OBSERVE_INTERVAL_MS must be a whole number of milliseconds, got ${text}`);
  return ms;
}

export interface OpenedHypervisorService {
  readonly handlers: Record<string, WorkHandler>;
  readonly machine: HypervisorMachine & { runtime: QemuRuntime };
  readonly observer: VmObserver | null;
  close(): Promise<void>;
}

export function openHypervisorService(context: WorkerServiceContext): OpenedHypervisorService {
  const machine = openHypervisorMachine(context.env);
  const report = (what: string) => (error: unknown) =>
    console.error(`hypervisor ${context.target ?? "(no host)"} ${context.datacenter}: ${what}: ${error instanceof Error ? error.message : String(error)}`);
  const hostId = context.target;
  const console_ =
    hostId && context.nats
      ? serveVmConsole({ ...context.nats, datacenter: context.datacenter, hostId, runtime: machine.runtime, onError: (e, what) => report(what)(e) })
      : null;
  const url = context.env.DATABASE_URL?.trim();
  const intervalMs = vmObserveIntervalMs(context.env);
  let database: { pool: ReturnType<typeof createPool>; store: PostgresEventStore } | null = null;
  let observer: VmObserver | null = null;
  if (hostId && url && intervalMs > 0) {
    const pool = createPool(url, { max: 3 });
    database = { pool, store: new PostgresEventStore({ pool }) };
    observer = new VmObserver({
      hostId,
      datacenter: context.datacenter,
      runtime: machine.runtime,
      disks: machine.store,
      store: database.store,
      db: createKysely(pool),
      intervalMs,
      onError: (error, what) => report(what)(error),
    });
    observer.start();
  }
  return {
    handlers: createHypervisorHandlers(machine),
    machine,
    observer,
    async close() {
      await observer?.stop();
      await console_?.stop();
      if (database) {
        await database.store.close();
        await database.pool.end();
      }
    },
  };
}

const opened: OpenedHypervisorService[] = [];

registerWorkerService({
  service: HYPERVISOR_SERVICE,
  description:
    "VMs on this machine's QEMU (tcg): disk-prepare, seed-build, vm-start, vm-stop, vm-reboot, vm-status, vm-destroy, disk-remove; with --host: the VM console (NATS request/reply) and the VM runtime observer",
  // One worker per host: it takes only the work routed to its host (dv.hypervisor.cmd.<action>.<dc>.<hostId>).
  workerOptions: (context) => (context.target ? { target: context.target } : {}),
  handlers(context) {
    const service = openHypervisorService(context);
    opened.push(service);
    return service.handlers;
  },
  async close() {
    const all = opened.splice(0);
    await Promise.all(all.map((s) => s.close()));
  },
});
