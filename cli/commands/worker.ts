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
    .action(async (options: WorkerCommandOptions) => {
      const { runWorker } = await import("../up/sagas.ts");
      runtime.exitCode = await runWorker(options, runtime.io, runtime.env);
    });
}
