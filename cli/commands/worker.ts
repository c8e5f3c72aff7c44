import { InvalidArgumentError, Option, type Command } from "commander";
import type { Runtime } from "../core/runtime.ts";

export interface WorkerCommandOptions {
  service: string[];
  datacenter: string;
  natsUrl?: string;
  namespace?: string;
  heartbeatMs: number;
  concurrency: number;
  /** HOST:PORT: also serve the boot service (/boot/, /healthz) from this process (maskin only). */
  bootListen?: string;
  /** The inventory host this worker runs on (hypervisor: it takes that hypervisor's work, serves its consoles, observes its VMs). */
  host?: string;
  /** Hypervisor run root (VM directories and `store/`); DV_VM_RUN_DIR. */
  vmDir?: string;
}

function positive(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError("expected a positive whole number");
  return n;
}

function token(value: string): string {
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(value)) throw new InvalidArgumentError("expected lowercase a-z, 0-9, '_' or '-'");
  return value;
}

/** A host id as a NATS subject token (it becomes one: `dv.hypervisor.cmd.<action>.<dc>.<host>`). */
function hostToken(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/.test(value)) throw new InvalidArgumentError("expected a host id: A-Z, a-z, 0-9, '_' or '-'");
  return value;
}

/**
 * `dv worker --service S --datacenter D`: runs the workers of a service in
 * one datacenter, alone (a composition root like `dv up`: it talks to NATS,
 * not to the API). Services come from adapters/workers/registry.ts.
 *
 * `--boot-listen HOST:PORT` (DV_BOOT_LISTEN), with `--service maskin`: the
 * same process also serves the boot service (`/boot/...`, `/healthz`) to the
 * machines of its datacenter, configured like `dv up`'s (DV_BOOT_ASSETS_DIR
 * or DV_TALOS_*_URL, ...; refused when no image is configured) and reading
 * the inventory and host streams through DATABASE_URL.
 *
 * `--host HOSTID` (DV_HOST_ID), required with `--service hypervisor`: the
 * worker serves that one hypervisor (work routed to it, its VM consoles,
 * its VM observer); `--vm-dir DIR` (DV_VM_RUN_DIR) is where its VMs and its
 * image/disk store live (adapters/workers/hypervisor/README.md).
 */
export function registerWorkerCommand(program: Command, runtime: Runtime): void {
  program
    .command("worker")
    .summary("run workers of a service in a datacenter")
    .description("run the workers of a service (repeat --service for several) in one datacenter: they take work requests from NATS JetStream and answer them")
    .addOption(new Option("--service <name>", "worker service (repeatable)").argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), token(value)]).makeOptionMandatory())
    .addOption(new Option("--datacenter <name>", "datacenter this worker serves").env("DV_DATACENTER").argParser(token).makeOptionMandatory())
    .addOption(new Option("--nats-url <url>", "NATS server(s), comma-separated").env("NATS_URL"))
    .addOption(new Option("--namespace <prefix>", "NATS subject/stream namespace (tests; empty in production)").env("DV_NATS_NAMESPACE"))
    .addOption(new Option("--heartbeat-ms <ms>", "heartbeat interval").default(2000).argParser(positive))
    .addOption(new Option("--concurrency <n>", "requests handled at once per service").default(8).argParser(positive))
    .addOption(new Option("--boot-listen <host:port>", "also serve the boot service (/boot/: iPXE, assets, Talos config, install callback) on this address; maskin only, needs a boot image configured").env("DV_BOOT_LISTEN"))
    .addOption(new Option("--host <hostId>", "the inventory host this worker runs on (required with --service hypervisor)").env("DV_HOST_ID").argParser(hostToken))
    .addOption(new Option("--vm-dir <dir>", "hypervisor: run root for VMs and the image/disk store (default <data dir>/vm)").env("DV_VM_RUN_DIR"))
    .action(async (options: WorkerCommandOptions) => {
      const { runWorker } = await import("../up/sagas.ts");
      runtime.exitCode = await runWorker(options, runtime.io, runtime.env);
    });
}
