import { execFile as execFileCb } from "node:child_process";
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { QmpClient, QmpClosedError, QmpConnectError, QmpError, QmpTimeoutError, QMP_SOCKET_PATH_MAX } from "./qmp.ts";
import {
  assertVmId,
  vmMac,
  type VmConsoleChunk,
  type VmEventStream,
  type VmProcess,
  type VmRunState,
  type VmRuntime,
  type VmSpec,
  type VmStartResult,
  type VmStatus,
  type VmStopResult,
} from "./port.ts";

export * from "./port.ts";

const execFile = promisify(execFileCb);

/**
 * The QEMU implementation of the VM runtime port: one daemonized
 * `qemu-system-x86_64` per VM (always `-accel tcg`: KVM is unusable on these
 * hosts, see ../shared/lab/NOTES.md), driven over QMP, no libvirt.
 *
 * Everything about a VM lives in its run directory `<runRoot>/<vmId>/`:
 *
 *   qemu.pid     QEMU's pidfile (`-pidfile`)
 *   qmp.sock     the command monitor: the runtime's short connections
 *   events.sock  a second monitor for a long-lived watcher (`watch`), so
 *                watching never blocks commands (one client per QMP socket)
 *   serial.log   ttyS0, appended across starts (`dvce vm console`)
 *   spec.json    the spec it was last started with
 *   argv.json    QEMU's command line, for whoever debugs it
 *
 * Liveness is zombie-aware: a daemonized QEMU is PID 1's child and lingers
 * as a zombie for a second or two after it exits, and `kill -0` succeeds on
 * a zombie, so `/proc/PID/stat`'s state is read instead. A pid counts as this
 * VM's only if `/proc/PID/cmdline` is a qemu-system whose QMP socket is this
 * VM's (no pid reuse confusion).
 *
 * Operations on one VM are serialized inside one runtime (a QMP socket takes
 * one client at a time). Nothing runs through a shell.
 */

export interface QemuRuntimeOptions {
  /** Where per-VM run directories go. Keep it short: socket paths must be under 108 bytes. */
  readonly runRoot: string;
  readonly qemuBinary?: string;
  readonly qemuImgBinary?: string;
  /** Extra arguments appended to every QEMU command line (tests, debugging). */
  readonly extraArgs?: readonly string[];
}

export class VmNotRunningError extends Error {
  override readonly name = "VmNotRunningError";
  constructor(readonly vmId: string, what: string) {
    super(`VM ${vmId} is not running: cannot ${what}`);
  }
}

export class QemuStartError extends Error {
  override readonly name = "QemuStartError";
  constructor(readonly vmId: string, readonly stderr: string, cause?: unknown) {
    super(`QEMU for VM ${vmId} did not start: ${stderr.trim().split("\n").slice(-3).join(" | ") || String(cause)}`, { cause });
  }
}

export const QEMU_INSTALL_HINT = "apt-get install --no-install-recommends qemu-system-x86 qemu-utils";

const LONGEST_SOCKET_NAME = "events.sock";

export class QemuRuntime implements VmRuntime {
  readonly runRoot: string;
  private readonly qemu: string;
  private readonly qemuImg: string;
  private readonly extraArgs: readonly string[];
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(options: QemuRuntimeOptions) {
    this.runRoot = resolve(options.runRoot);
    this.qemu = options.qemuBinary ?? "qemu-system-x86_64";
    this.qemuImg = options.qemuImgBinary ?? "qemu-img";
    this.extraArgs = options.extraArgs ?? [];
    const longest = Buffer.byteLength(join(this.runRoot, "x".repeat(64), LONGEST_SOCKET_NAME));
    if (longest > QMP_SOCKET_PATH_MAX) {
      throw new Error(`runRoot ${this.runRoot} is too long: a VM's QMP socket path would be ${longest} bytes (unix sockets need under 108)`);
    }
  }

  runDir(vmId: string): string {
    assertVmId(vmId);
    return join(this.runRoot, vmId);
  }

  consoleLogPath(vmId: string): string {
    return join(this.runDir(vmId), "serial.log");
  }

  async readConsole(vmId: string, options: { offset?: number; maxBytes?: number } = {}): Promise<VmConsoleChunk> {
    const offset = Math.max(0, Math.floor(options.offset ?? 0));
    const maxBytes = Math.max(4, Math.min(Math.floor(options.maxBytes ?? 64 * 1024), 4 * 1024 * 1024));
    const file = await open(this.consoleLogPath(vmId), "r").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return null;
      throw error;
    });
    if (!file) return { text: "", nextOffset: offset, size: 0 };
    try {
      const { size } = await file.stat();
      const length = Math.max(0, Math.min(maxBytes, size - offset));
      const buffer = Buffer.alloc(length);
      const { bytesRead } = length > 0 ? await file.read(buffer, 0, length, offset) : { bytesRead: 0 };
      // Stop before a UTF-8 sequence cut at the end: the next read starts with it whole.
      let end = bytesRead;
      const cut = incompleteUtf8Tail(buffer.subarray(0, bytesRead));
      if (cut > 0 && cut < bytesRead) end -= cut;
      return { text: buffer.subarray(0, end).toString("utf8"), nextOffset: offset + end, size };
    } finally {
      await file.close();
    }
  }

  private qmpSocket(vmId: string): string {
    return join(this.runDir(vmId), "qmp.sock");
  }

  private eventsSocket(vmId: string): string {
    return join(this.runDir(vmId), "events.sock");
  }

  private pidFile(vmId: string): string {
    return join(this.runDir(vmId), "qemu.pid");
  }

  /** The QEMU command line `start` would run for this spec (pure apart from paths). */
  argv(spec: VmSpec): string[] {
    assertVmId(spec.vmId);
    const dir = this.runDir(spec.vmId);
    const args = [
      "-name", `guest=${opt(spec.vmId)}`,
      "-accel", "tcg",
      "-machine", "pc",
      "-smp", String(spec.vcpus),
      "-m", String(spec.memoryMiB),
      "-display", "none",
      "-nodefaults",
      "-no-user-config",
      "-daemonize",
      "-pidfile", join(dir, "qemu.pid"),
      "-qmp", `unix:${opt(this.qmpSocket(spec.vmId))},server=on,wait=off`,
      "-qmp", `unix:${opt(this.eventsSocket(spec.vmId))},server=on,wait=off`,
      "-chardev", `file,id=serial0,path=${opt(join(dir, "serial.log"))},append=on`,
      "-serial", "chardev:serial0",
    ];
    if (spec.startPaused) args.push("-S");
    if (spec.disk) {
      args.push(
        "-blockdev", `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${opt(resolve(spec.disk.overlay))}`,
        "-device", `virtio-blk-pci,drive=disk0,id=vda${spec.boot.kind === "disk" ? ",bootindex=1" : ""}`,
      );
    }
    if (spec.seedIso) {
      args.push(
        "-blockdev", `driver=raw,node-name=seed0,read-only=on,file.driver=file,file.filename=${opt(resolve(spec.seedIso))}`,
        "-device", "ide-cd,drive=seed0,id=cidata,bus=ide.1",
      );
    }
    (spec.nics ?? []).forEach((nic, i) => {
      const fwd = nic.sshHostPort === undefined ? "" : `,hostfwd=tcp:127.0.0.1:${nic.sshHostPort}-:22`;
      args.push(
        "-netdev", `user,id=net${i}${fwd}`,
        "-device", `${nic.model ?? "virtio-net-pci"},netdev=net${i},id=nic${i},mac=${nic.mac ?? vmMac(spec.vmId, i)}`,
      );
    });
    if (spec.boot.kind === "kernel") {
      args.push("-kernel", resolve(spec.boot.kernel));
      if (spec.boot.initrd) args.push("-initrd", resolve(spec.boot.initrd));
      if (spec.boot.append) args.push("-append", spec.boot.append);
    }
    args.push(...this.extraArgs);
    return args;
  }

  start(spec: VmSpec): Promise<VmStartResult> {
    validateSpec(spec);
    return this.serialized(spec.vmId, async () => {
      const macs = (spec.nics ?? []).map((nic, i) => nic.mac ?? vmMac(spec.vmId, i));
      const running = await this.ownedPid(spec.vmId);
      if (running !== null) return { vmId: spec.vmId, pid: running, alreadyRunning: true, macs, startMs: 0 };

      const dir = this.runDir(spec.vmId);
      await mkdir(dir, { recursive: true });
      await Promise.all(["qemu.pid", "qmp.sock", "events.sock"].map((f) => rm(join(dir, f), { force: true })));
      if (spec.disk) await this.ensureOverlay(spec.disk.overlay, spec.disk.base, spec.disk.size);
      const argv = this.argv(spec);
      await writeFile(join(dir, "spec.json"), `${JSON.stringify(spec, null, 2)}\n`);
      await writeFile(join(dir, "argv.json"), `${JSON.stringify([this.qemu, ...argv])}\n`);

      const t0 = performance.now();
      try {
        await execFile(this.qemu, argv, { timeout: 30_000, maxBuffer: 1 << 20 });
      } catch (error) {
        const e = error as NodeJS.ErrnoException & { stderr?: string };
        if (e.code === "ENOENT") throw new QemuStartError(spec.vmId, `${this.qemu} not found: ${QEMU_INSTALL_HINT}`, error);
        throw new QemuStartError(spec.vmId, e.stderr ?? "", error);
      }
      const pid = await readPid(this.pidFile(spec.vmId));
      if (pid === null || !(await alive(pid))) throw new QemuStartError(spec.vmId, "QEMU daemonized but its process is gone (see serial.log)");
      // Ready means QMP answers: the first command after a start must not race QEMU's init.
      const qmp = await QmpClient.connect(this.qmpSocket(spec.vmId), { timeoutMs: 10_000 });
      try {
        await qmp.execute("query-status");
      } finally {
        qmp.close();
      }
      return { vmId: spec.vmId, pid, alreadyRunning: false, macs, startMs: Math.round(performance.now() - t0) };
    });
  }

  status(vmId: string): Promise<VmStatus> {
    assertVmId(vmId);
    return this.serialized(vmId, async () => {
      const pid = await this.ownedPid(vmId);
      if (pid === null) return { vmId, state: "absent", pid: null };
      let qmp: QmpClient | undefined;
      try {
        qmp = await QmpClient.connect(this.qmpSocket(vmId), { timeoutMs: 3_000, commandTimeoutMs: 3_000 });
        const answer = await qmp.execute<{ status: string }>("query-status");
        return { vmId, state: answer.status as VmRunState, pid };
      } catch (error) {
        if (!isQmpTransportError(error)) throw error;
        return (await alive(pid)) ? { vmId, state: "unresponsive", pid } : { vmId, state: "absent", pid: null };
      } finally {
        qmp?.close();
      }
    });
  }

  stop(vmId: string, options: { acpiTimeoutMs?: number } = {}): Promise<VmStopResult> {
    assertVmId(vmId);
    const acpiTimeoutMs = options.acpiTimeoutMs ?? 30_000;
    return this.serialized(vmId, async () => {
      const t0 = performance.now();
      const done = (method: VmStopResult["method"]) => ({ vmId, method, durationMs: Math.round(performance.now() - t0) });
      const pid = await this.ownedPid(vmId);
      if (pid === null) return done("absent");
      let qmp: QmpClient | undefined;
      try {
        qmp = await QmpClient.connect(this.qmpSocket(vmId), { timeoutMs: 3_000, commandTimeoutMs: 3_000 });
      } catch (error) {
        if (!isQmpTransportError(error)) throw error;
      }
      try {
        if (qmp) {
          await qmp.execute("system_powerdown").catch(ignoreQmpTransport);
          if (await waitGone(pid, acpiTimeoutMs)) return this.cleaned(vmId, done("acpi"));
          await qmp.execute("quit").catch(ignoreQmpTransport);
          if (await waitGone(pid, 5_000)) return this.cleaned(vmId, done("quit"));
        }
      } finally {
        qmp?.close();
      }
      await hardKill(pid);
      return this.cleaned(vmId, done("kill"));
    });
  }

  reboot(vmId: string): Promise<void> {
    assertVmId(vmId);
    return this.withQmp(vmId, "reboot", async (qmp) => {
      const reset = qmp.waitForEvent("RESET", { timeoutMs: 5_000 });
      reset.catch(() => undefined);
      await qmp.execute("system_reset");
      await reset;
    });
  }

  /** Continues a VM started with `startPaused` (or paused with QMP `stop`). */
  resume(vmId: string): Promise<void> {
    assertVmId(vmId);
    return this.withQmp(vmId, "resume", async (qmp) => {
      await qmp.execute("cont");
    });
  }

  kill(vmId: string): Promise<VmStopResult> {
    assertVmId(vmId);
    return this.serialized(vmId, async () => {
      const t0 = performance.now();
      const pid = await this.ownedPid(vmId);
      if (pid === null) return { vmId, method: "absent" as const, durationMs: 0 };
      await hardKill(pid);
      return this.cleaned(vmId, { vmId, method: "kill" as const, durationMs: Math.round(performance.now() - t0) });
    });
  }

  /**
   * A long-lived connection to the VM's second QMP monitor: its events
   * (STOP, RESUME, RESET, POWERDOWN, SHUTDOWN, ...) as a stream that ends
   * when QEMU exits. Does not block the runtime's own commands.
   */
  async watch(vmId: string, options: { timeoutMs?: number } = {}): Promise<VmEventStream> {
    assertVmId(vmId);
    if ((await this.ownedPid(vmId)) === null) throw new VmNotRunningError(vmId, "watch");
    const qmp = await QmpClient.connect(this.eventsSocket(vmId), { timeoutMs: options.timeoutMs ?? 5_000 });
    return {
      events: qmp.events(),
      closed: qmp.closedPromise().then(() => undefined),
      close: () => qmp.close(),
    };
  }

  async list(): Promise<VmProcess[]> {
    const found = new Map<string, VmProcess>();
    // 1. pidfiles in the run directories
    const dirs = await readdir(this.runRoot).catch(() => [] as string[]);
    for (const vmId of dirs) {
      if (!isVmId(vmId)) continue;
      const pid = await this.ownedPid(vmId);
      if (pid !== null) found.set(vmId, { vmId, pid, runDir: this.runDir(vmId) });
    }
    // 2. processes whose pidfile is gone but whose QMP socket is under runRoot
    const prefix = `unix:${this.runRoot}/`;
    for (const entry of await readdir("/proc").catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      if ([...found.values()].some((p) => p.pid === pid)) continue;
      const argv = await cmdline(pid);
      if (!argv?.[0]?.includes("qemu-system")) continue;
      const qmpArg = argv.find((a) => a.startsWith(prefix) && a.includes("/qmp.sock,"));
      if (!qmpArg) continue;
      const vmId = qmpArg.slice(prefix.length).split("/")[0] ?? "";
      if (isVmId(vmId) && !found.has(vmId) && (await alive(pid))) found.set(vmId, { vmId, pid, runDir: this.runDir(vmId) });
    }
    return [...found.values()].sort((a, b) => a.vmId.localeCompare(b.vmId));
  }

  /** Removes a stopped VM's run directory (serial log included). Refuses while it runs. */
  async removeRunDir(vmId: string): Promise<void> {
    return this.serialized(vmId, async () => {
      if ((await this.ownedPid(vmId)) !== null) throw new Error(`VM ${vmId} still runs: stop it before removing its run directory`);
      await rm(this.runDir(vmId), { recursive: true, force: true });
    });
  }

  /** The live pid of this VM's QEMU, or null (no pidfile, dead, zombie, or not our QEMU). */
  async ownedPid(vmId: string): Promise<number | null> {
    const pid = await readPid(this.pidFile(vmId));
    if (pid === null || !(await alive(pid))) return null;
    const argv = await cmdline(pid);
    if (!argv?.[0]?.includes("qemu-system")) return null;
    const ours = `unix:${opt(this.qmpSocket(vmId))},`;
    return argv.some((a) => a.startsWith(ours)) ? pid : null;
  }

  private async ensureOverlay(overlay: string, base: string | undefined, size: string | undefined): Promise<void> {
    const exists = await stat(overlay).then(() => true, () => false);
    if (!exists) {
      if (!base) throw new Error(`disk overlay ${overlay} does not exist and no base image was given`);
      await mkdir(resolve(overlay, ".."), { recursive: true });
      const args = ["create", "-q", "-f", "qcow2", "-b", resolve(base), "-F", "qcow2", resolve(overlay)];
      if (size) args.push(size);
      await execFile(this.qemuImg, args).catch((error: NodeJS.ErrnoException & { stderr?: string }) => {
        throw new Error(`qemu-img create ${overlay} on ${base} failed: ${error.code === "ENOENT" ? QEMU_INSTALL_HINT : (error.stderr ?? error.message).trim()}`);
      });
      return;
    }
    if (!base) return;
    // An existing overlay is the VM's disk: keep it, but never on another base.
    const { stdout } = await execFile(this.qemuImg, ["info", "--output=json", "-U", resolve(overlay)]);
    const info = JSON.parse(stdout) as { "backing-filename"?: string; "full-backing-filename"?: string };
    const backing = info["full-backing-filename"] ?? info["backing-filename"];
    if (!backing || resolve(backing) !== resolve(base)) {
      throw new Error(`disk overlay ${overlay} exists on base ${backing ?? "(none)"}, not on ${resolve(base)}`);
    }
  }

  private async withQmp<T>(vmId: string, what: string, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
    return this.serialized(vmId, async () => {
      if ((await this.ownedPid(vmId)) === null) throw new VmNotRunningError(vmId, what);
      const qmp = await QmpClient.connect(this.qmpSocket(vmId), { timeoutMs: 5_000 });
      try {
        return await fn(qmp);
      } finally {
        qmp.close();
      }
    });
  }

  private async cleaned(vmId: string, result: VmStopResult): Promise<VmStopResult> {
    await Promise.all(["qemu.pid", "qmp.sock", "events.sock"].map((f) => rm(join(this.runDir(vmId), f), { force: true })));
    return result;
  }

  private serialized<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(vmId) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(vmId, tail);
    void tail.then(() => {
      if (this.locks.get(vmId) === tail) this.locks.delete(vmId);
    });
    return next;
  }
}

function validateSpec(spec: VmSpec): void {
  assertVmId(spec.vmId);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > 255) throw new RangeError(`vcpus must be an integer in 1..255, got ${spec.vcpus}`);
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16) throw new RangeError(`memoryMiB must be an integer ≥ 16, got ${spec.memoryMiB}`);
  for (const nic of spec.nics ?? []) {
    if (nic.sshHostPort !== undefined && (!Number.isInteger(nic.sshHostPort) || nic.sshHostPort < 1 || nic.sshHostPort > 65535)) {
      throw new RangeError(`sshHostPort must be a TCP port, got ${nic.sshHostPort}`);
    }
    if (nic.mac !== undefined && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(nic.mac)) throw new RangeError(`invalid MAC ${nic.mac}`);
    if (nic.model !== undefined && !/^[a-z0-9-]+$/.test(nic.model)) throw new RangeError(`invalid NIC model ${nic.model}`);
  }
}

function isVmId(s: string): boolean {
  try {
    assertVmId(s);
    return true;
  } catch {
    return false;
  }
}

/** QEMU's option syntax: a comma inside a value is written twice. */
function opt(value: string): string {
  return value.replaceAll(",", ",,");
}

function isQmpTransportError(error: unknown): boolean {
  return error instanceof QmpConnectError || error instanceof QmpClosedError || error instanceof QmpTimeoutError;
}

function ignoreQmpTransport(error: unknown): void {
  if (!isQmpTransportError(error) && !(error instanceof QmpError)) throw error;
}

/** How many bytes at the end of `b` are the start of a UTF-8 sequence that continues past it. */
function incompleteUtf8Tail(b: Buffer): number {
  for (let back = 1; back <= Math.min(3, b.length); back++) {
    const byte = b[b.length - back] ?? 0;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte: look further back
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

async function readPid(file: string): Promise<number | null> {
  const text = await readFile(file, "utf8").catch(() => "");
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 1 ? pid : null;
}

/** Alive and not a zombie (`kill -0` would say yes to a zombie). */
export async function alive(pid: number): Promise<boolean> {
  const s = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  if (s === null) return false;
  const state = s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X" && state !== "x";
}

async function cmdline(pid: number): Promise<string[] | null> {
  const raw = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => null);
  return raw ? raw.split("\0").filter((a) => a.length > 0) : null;
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await alive(pid))) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function hardKill(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
  if (!(await waitGone(pid, 10_000))) throw new Error(`QEMU pid ${pid} survived SIGKILL for 10 s`);
}
