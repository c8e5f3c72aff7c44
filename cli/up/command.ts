import { InvalidArgumentError, Option, type Command } from "commander";
import { homedir } from "node:os";
import { join } from "node:path";
import type { Runtime } from "../core/runtime.ts";

export interface UpOptions {
  port: number;
  host: string;
  dataDir: string;
  /** The datacenter the in-process workers serve. */
  datacenter: string;
  /** False with --no-workers: workers run elsewhere (`dv worker`). */
  workers: boolean;
}

/**
 * Where `dv up` keeps the embedded PostgreSQL and other local state:
 * ~/.local/share/dv (or $XDG_DATA_HOME/dv); as root /var/lib/dv, because
 * PostgreSQL then runs as the postgres user, which cannot enter /root.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, uid: number | undefined = process.getuid?.()): string {
  if (env.DV_DATA_DIR?.trim()) return env.DV_DATA_DIR;
  if (uid === 0) return "/var/lib/dv";
  return join(env.XDG_DATA_HOME?.trim() || join(homedir(), ".local", "share"), "dv");
}

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError("expected a port number, 0-65535");
  return n;
}

/**
 * `dv up`: the composition root. Only this command (and later `dv worker`)
 * loads the server, the store and the runners; they are imported when it
 * runs, so every other command stays a thin HTTP client.
 */
export function registerUpCommand(program: Command, runtime: Runtime): void {
  program
    .command("up")
    .summary("run the control plane on this machine")
    .description("run the control plane on this machine: API, projections, identity, the NATS relay, sagas and workers, on embedded Postgres unless DATABASE_URL is set")
    .addOption(new Option("--port <port>", "HTTP port").env("DV_PORT").default(8080).argParser(port))
    .addOption(new Option("--host <address>", "address to listen on").env("DV_HOST").default("127.0.0.1"))
    .addOption(new Option("--data-dir <dir>", "local state: embedded Postgres lives in <dir>/postgres").env("DV_DATA_DIR").default(defaultDataDir(runtime.env), "~/.local/share/dv; /var/lib/dv as root"))
    .addOption(new Option("--datacenter <name>", "the datacenter this machine's in-process workers serve").env("DV_DATACENTER").default("local"))
    .option("--no-workers", "run no workers in this process (run them with `dv worker` near the hardware)")
    .addHelpText("after", `
Environment:
  DATABASE_URL          use this Postgres instead of the embedded one (created and migrated when missing)
  NATS_URL              NATS JetStream the event relay publishes to (default nats://127.0.0.1:4222; may be down)
  DV_NATS_NAMESPACE     prefix for NATS subjects and streams (tests, several installations on one NATS; default none)
  DV_BOOTSTRAP_SECRET   the bootstrap credential to accept (default: one is generated on the first start and printed once)

Ctrl-C (or SIGTERM) stops cleanly; a second Ctrl-C forces the exit.`)
    .action(async (options: UpOptions) => {
      const { runUp } = await import("./server.ts");
      runtime.exitCode = await runUp(options, runtime.io, runtime.env);
    });
}
