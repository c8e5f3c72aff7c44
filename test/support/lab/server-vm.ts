import { execFile as execFileCb, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freeUdpPorts, onPath, udpBoundBy } from "../local-peers.ts";

const execFile = promisify(execFileCb);

/**
 * A lab "bare-metal server": a QEMU VM whose BMC is an OpenIPMI `ipmi_sim`
 * (variant B of ../shared/lab/02-bmc-qemu.sh). The BMC's chassis_control
 * program, written here, runs the VM itself:
 *
 * - `set power 1` starts QEMU daemonized (`-accel tcg`: KVM is unusable on
 *   these machines) with a blank qcow2 disk, an e1000 NIC with Debian's iPXE
 *   ROM (ipxe-qemu) and `-boot strict=on`. The boot flag decides the order by
 *   `bootindex`: `pxe` puts the NIC first and the disk second, anything else
 *   leaves the disk as the only boot entry (without strict + bootindex,
 *   SeaBIOS falls back to PXE when the disk is blank). The flag is one-shot,
 *   as on real BMCs: a power on consumes it.
 * - `set power 0` quits QEMU (SIGTERM, SIGKILL after 3 s); `set reset 1` is
 *   QMP `system_reset`, `set shutdown 1` QMP `system_powerdown` (socat).
 * - `get power` is whether that QEMU lives (zombie-aware: a daemonized QEMU is
 *   PID 1's child, reaped lazily, and `kill -0` succeeds on a zombie).
 * - The VM's network is slirp: DHCP hands iPXE `bootUrl` as its boot file,
 *   and the host's 127.0.0.1 is reachable from the guest as 10.0.2.2, so a
 *   boot service on 127.0.0.1:PORT is http://10.0.2.2:PORT to the VM.
 *
 * What happened is on disk for the test to read: `chassis.log` (every call
 * the BMC made, the format of test/support/ipmi-sim.ts), `vm.log` (what the
 * "hardware" did: `start pid=... boot=pxe|disk`, `stop`, `exited` (the guest
 * powered itself off; noted when the BMC next reads the power), `reset`,
 * `powerdown`, `boot-flag`), `serial.log` (the guest's ttyS0) and `seabios.log`
 * (SeaBIOS's debug console: "Booting from ROM" = the NIC's iPXE, "No
 * bootable device" = the blank disk), all appended across power cycles.
 *
 * Teardown powers the VM off through its pid file and stops ipmi_sim, then
 * waits until neither process exists any more (zombies included); a test
 * process that dies without `stop()` still kills both from an exit hook.
 */

export const LAB_INSTALL_HINT =
  "apt-get install --no-install-recommends openipmi ipmitool qemu-system-x86 qemu-utils ipxe-qemu socat";

const REQUIRED_TOOLS: ReadonlyArray<readonly [string, string]> = [
  ["ipmi_sim", "openipmi"],
  ["ipmitool", "ipmitool"],
  ["qemu-system-x86_64", "qemu-system-x86"],
  ["qemu-img", "qemu-utils"],
  ["socat", "socat"],
  ["dpkg-deb", "dpkg"],
];
const IPXE_ROM_DIR = "/usr/lib/ipxe/qemu";

/** Fails with the apt-get line when a tool or the iPXE ROM is missing. */
export function assertLabInstalled(): void {
  const missing = REQUIRED_TOOLS.filter(([tool]) => !onPath(tool)).map(([tool, pkg]) => `${tool} (${pkg})`);
  if (!existsSync(join(IPXE_ROM_DIR, "efi-e1000.rom")) && !existsSync(join(IPXE_ROM_DIR, "pxe-e1000.rom"))) missing.push(`the e1000 iPXE ROM in ${IPXE_ROM_DIR} (ipxe-qemu)`);
  if (missing.length > 0) {
    throw new Error(`the lab needs real peers; missing: ${missing.join(", ")}. Install them with: ${LAB_INSTALL_HINT}`);
  }
}

export interface ChassisCall {
  /** Wall-clock milliseconds since the epoch (fractional). */
  readonly at: number;
  readonly op: string;
  readonly args: readonly string[];
}

export interface VmEvent {
  readonly at: number;
  /** start | stop | exited | reset | powerdown | boot-flag */
  readonly what: string;
  readonly details: Readonly<Record<string, string>>;
}

export interface LabServerOptions {
  readonly name?: string;
  /** Lower-case MAC of the VM's only NIC (default: 52:54:00:d5:xx:xx, random). */
  readonly mac?: string;
  /** The URL DHCP hands to iPXE as its boot file; iPXE expands `${net0/mac}` in it. */
  readonly bootUrl: string;
  readonly memoryMib?: number;
  /** Size of the VM's blank qcow2 disk (default 1024 MiB; a release test wipes a small one). */
  readonly diskMib?: number;
  readonly username?: string;
  readonly password?: string;
  /**
   * After a power on started the VM, the chassis program holds the BMC's
   * answer this long (keep it under a second: ipmitool re-sends after that).
   * A test uses it to kill the caller between the side effect and its result.
   */
  readonly holdPowerOnMs?: number;
}

export interface LabServer {
  readonly name: string;
  readonly mac: string;
  readonly dir: string;
  readonly bmc: { readonly address: string; readonly port: number; readonly username: string; readonly password: string; readonly pid: number };
  /** The "hardware" truth: whether the VM's QEMU process lives. */
  powered(): Promise<boolean>;
  /** The QEMU pid when powered. */
  qemuPid(): Promise<number | null>;
  /** The boot flag the chassis holds (`default` once a power on consumed `pxe`). */
  bootFlag(): Promise<string>;
  chassisLog(): Promise<ChassisCall[]>;
  vmLog(): Promise<VmEvent[]>;
  serialLog(): Promise<string>;
  seabiosLog(): Promise<string>;
  /** The disk's bytes as the guest sees them (qemu-img convert to raw; read it while the VM is off). */
  readDisk(): Promise<Buffer>;
  /** `ipmitool ... ARGS` against this BMC (lanplus, -C 3), stdout. */
  ipmitool(...args: string[]): Promise<string>;
  /** Everything that tells what the server did, for a failing test's message. */
  describe(): Promise<string>;
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------

// `PROG DIR get|set|check ARGS...`; ipmi_sim quotes set values ("1"), the shell unquotes them.
// It runs synchronously inside the BMC's event loop: it must return well under a second
// and leave nothing holding its stdout (QEMU daemonizes with its stdio on a log file).
const CHASSIS_PROGRAM = String.raw`#!/bin/bash
d=$1; shift; op=$1; shift
. "$d/vm.env"
echo "$(date +%s.%N) $op $*" >> "$d/chassis.log"
note() { echo "$(date +%s.%N) $*" >> "$d/vm.log"; }
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
# vm.pid, not QEMU's own pid file: QEMU deletes that when the guest powers off, and then nobody could say it exited.
pid() { local p; p=$(cat "$d/vm.pid" 2>/dev/null) && [ -n "$p" ] && alive "$p" && grep -q '^qemu-system' "/proc/$p/comm" 2>/dev/null && echo "$p"; }
qmp() { printf '{"execute":"qmp_capabilities"}\n{"execute":"%s"}\n' "$1" | socat -t 1 - "UNIX-CONNECT:$d/qmp.sock" 2>/dev/null | grep -q '"return"'; }
power_on() {
  pid >/dev/null && return 0
  local boot nicidx="" diskidx=",bootindex=1"
  boot=$(cat "$d/boot" 2>/dev/null || echo default)
  if [ "$boot" = pxe ]; then nicidx=",bootindex=1"; diskidx=",bootindex=2"; echo default > "$d/boot"; fi
  rm -f "$d/qmp.sock" "$d/qemu.pid"; : > "$d/vm.pid"
  if ! "$QEMU" -name "$NAME" -accel tcg -display none -nodefaults -m "$MEM" \
    -daemonize -pidfile "$d/qemu.pid" -no-reboot \
    -qmp "unix:$d/qmp.sock,server=on,wait=off" \
    -chardev "file,id=ser0,path=$d/serial.log,append=on" -serial chardev:ser0 \
    -chardev "file,id=dbg0,path=$d/seabios.log,append=on" -device isa-debugcon,iobase=0x402,chardev=dbg0 \
    -netdev "user,id=n0,bootfile=$BOOT_URL" \
    -device "e1000,netdev=n0,mac=$MAC$nicidx" \
    -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$d/disk.qcow2" \
    -device "virtio-blk-pci,drive=disk0$diskidx" \
    -boot strict=on </dev/null >>"$d/qemu.log" 2>&1; then
    note "start-failed boot=$boot"; return 0
  fi
  local b=disk; [ "$boot" = pxe ] && b=pxe
  cat "$d/qemu.pid" > "$d/vm.pid" 2>/dev/null
  note "start pid=$(cat "$d/vm.pid") boot=$b"
  # A test's window between the side effect and the BMC's answer (see holdPowerOnMs).
  if [ -n "$HOLD_POWER_ON_S" ]; then sleep "$HOLD_POWER_ON_S"; fi
}
power_off() {
  local p; p=$(pid) || return 0
  kill "$p" 2>/dev/null
  for _ in $(seq 30); do alive "$p" || { note "stop pid=$p"; : > "$d/vm.pid"; return 0; }; sleep 0.1; done
  kill -9 "$p" 2>/dev/null
  note "stop pid=$p killed=1"; : > "$d/vm.pid"
}
case "$op" in
get) for n in "$@"; do case $n in
       power) if pid >/dev/null; then echo power:1; else
                # the guest powered itself off (or QEMU died): say so once, with when the BMC noticed
                if [ -s "$d/vm.pid" ]; then note "exited pid=$(cat "$d/vm.pid")"; : > "$d/vm.pid"; fi
                echo power:0; fi ;;
       boot)  b=$(cat "$d/boot" 2>/dev/null || echo default)
              case $b in none|pxe|default|cdrom|bios) echo "boot:$b" ;; *) echo boot:default ;; esac ;;
       *)     echo "$n:0" ;;
     esac; done ;;
set) while [ $# -ge 2 ]; do n=$1 v=$2; shift 2; case $n in
       power)    if [ "$v" = 1 ]; then power_on; else power_off; fi ;;
       reset)    if pid >/dev/null; then qmp system_reset && note "reset"; fi ;;
       shutdown) if pid >/dev/null; then qmp system_powerdown && note "powerdown"; fi ;;
       boot)     echo "$v" > "$d/boot"; note "boot-flag value=$v" ;;
       identify) echo "$v" > "$d/identify" ;;
     esac; done ;;
check) exit 0 ;;
esac
exit 0
`;

const EMU = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`;

let serverIndex = 0;
const cleanups = new Set<() => void>();
process.once("exit", () => {
  for (const cleanup of cleanups) cleanup();
});

export async function startLabServer(options: LabServerOptions): Promise<LabServer> {
  assertLabInstalled();
  const index = ++serverIndex;
  const name = options.name ?? `server${index}`;
  const mac = (options.mac ?? randomMac()).toLowerCase();
  const username = options.username ?? "admin";
  const password = options.password ?? "password";
  const dir = await mkdtemp(join(tmpdir(), "dv-lab-"));
  const script = join(dir, "chassis.sh");
  await writeFile(script, CHASSIS_PROGRAM);
  await chmod(script, 0o755);
  await mkdir(join(dir, "state"));
  await writeFile(
    join(dir, "vm.env"),
    Object.entries({ NAME: name, MAC: mac, MEM: String(options.memoryMib ?? 256), BOOT_URL: options.bootUrl.replaceAll(",", ",,"), QEMU: "qemu-system-x86_64", HOLD_POWER_ON_S: options.holdPowerOnMs ? (options.holdPowerOnMs / 1000).toFixed(3) : "" })
      .map(([key, value]) => `${key}=${shellQuote(value)}\n`)
      .join(""),
  );
  await execFile("qemu-img", ["create", "-q", "-f", "qcow2", join(dir, "disk.qcow2"), `${options.diskMib ?? 1024}M`]);

  let bmc: { child: ChildProcess; port: number; exit: Promise<void>; exited: () => boolean } | undefined;
  // Kills what is left, synchronously (the exit hook cannot wait).
  const killAll = () => {
    const qemu = readPid(join(dir, "vm.pid"));
    if (qemu !== null && isQemu(qemu)) {
      try {
        process.kill(qemu, "SIGKILL");
      } catch {
        // gone
      }
    }
    if (bmc && !bmc.exited()) bmc.child.kill("SIGKILL");
  };
  cleanups.add(killAll);
  try {
    for (let attempt = 1; ; attempt++) {
      const [port] = (await freeUdpPorts(1)) as [number];
      await writeFile(join(dir, "lan.conf"), lanConf(name, port, username, password, `${script} ${dir}`, index));
      await writeFile(join(dir, "bmc.emu"), EMU);
      try {
        bmc = await startIpmiSim(dir, port);
        break;
      } catch (error) {
        if (attempt >= 3 || !/Unable to bind/.test(String(error))) throw error;
      }
    }
  } catch (error) {
    cleanups.delete(killAll);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const running = bmc;

  const text = (file: string) => readFile(join(dir, file), "utf8").catch(() => "");
  const qemuPid = async () => {
    const pid = readPid(join(dir, "vm.pid"));
    return pid !== null && (await alive(pid)) && isQemu(pid) ? pid : null;
  };
  let stopped = false;
  const server: LabServer = {
    name,
    mac,
    dir,
    bmc: { address: "127.0.0.1", port: running.port, username, password, pid: running.child.pid! },
    powered: async () => (await qemuPid()) !== null,
    qemuPid,
    bootFlag: async () => (await text("boot")).trim() || "default",
    chassisLog: async () => parseLines(await text("chassis.log")).map(([at, op, ...args]) => ({ at, op: op ?? "", args })),
    vmLog: async () =>
      parseLines(await text("vm.log")).map(([at, what, ...rest]) => ({
        at,
        what: what ?? "",
        details: Object.fromEntries(rest.map((kv) => [kv.split("=")[0]!, kv.split("=").slice(1).join("=")])),
      })),
    serialLog: () => text("serial.log"),
    seabiosLog: () => text("seabios.log"),
    readDisk: async () => {
      const raw = join(dir, `disk-read-${Date.now()}.raw`);
      try {
        await execFile("qemu-img", ["convert", "-U", "-f", "qcow2", "-O", "raw", join(dir, "disk.qcow2"), raw]);
        return await readFile(raw);
      } finally {
        await rm(raw, { force: true });
      }
    },
    ipmitool: async (...args) => {
      const { stdout } = await execFile("ipmitool", ["-I", "lanplus", "-C", "3", "-N", "1", "-R", "2", "-H", "127.0.0.1", "-p", String(running.port), "-U", username, "-E", ...args], {
        env: { ...process.env, IPMI_PASSWORD: password },
        timeout: 20_000,
      });
      return stdout;
    },
    describe: async () => {
      const tail = (s: string, n: number) => s.split("\n").slice(-n).join("\n");
      return [
        `--- ${name} (${mac}), BMC udp/${running.port}, dir ${dir}`,
        `--- chassis.log\n${tail(await text("chassis.log"), 40)}`,
        `--- vm.log\n${await text("vm.log")}`,
        `--- qemu.log\n${tail(await text("qemu.log"), 20)}`,
        `--- serial.log (DV-INSTALLER lines and the kernel's last lines)\n${(await text("serial.log")).split("\n").filter((l) => l.includes("DV-INSTALLER") || /Linux version|Kernel panic|Power down/.test(l)).join("\n")}`,
        `--- seabios.log (boot lines)\n${(await text("seabios.log")).split("\n").filter((l) => /Booting|No bootable|Boot failed|Select boot/.test(l)).join("\n")}`,
      ].join("\n");
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      // The VM first (ipmi_sim does not take its VM along when it dies), then the BMC.
      const pid = await qemuPid();
      if (pid !== null && isQemu(pid)) {
        process.kill(pid, "SIGTERM");
        if (!(await until(() => alive(pid).then((a) => !a), 3_000))) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // gone meanwhile
          }
          await until(() => alive(pid).then((a) => !a), 3_000);
        }
      }
      if (!running.exited()) {
        running.child.kill("SIGTERM");
        const timer = setTimeout(() => running.child.kill("SIGKILL"), 2_000);
        await running.exit;
        clearTimeout(timer);
      }
      // Our own child is reaped by node; the daemonized QEMU is PID 1's: wait until it is gone, not just dead.
      if (pid !== null) await until(() => gone(pid), 5_000);
      cleanups.delete(killAll);
      if (!process.env.LAB_KEEP) await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** Polls `check` every 100 ms until it is true or `timeoutMs` passed; says which. */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Like `until`, but fails with `what` (and `context()` when given) on timeout. */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, context?: () => Promise<string> | string): Promise<void> {
  if (await until(check, timeoutMs)) return;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${context ? `\n${await context()}` : ""}`);
}

// ---------------------------------------------------------------------------

function lanConf(name: string, port: number, username: string, password: string, chassis: string, index: number): string {
  const auths = "none md2 md5 straight";
  return [
    `name "${name}"`,
    "set_working_mc 0x20",
    "  startlan 1",
    `    addr 127.0.0.1 ${port}`,
    "    priv_limit admin",
    `    allowed_auths_callback ${auths}`,
    `    allowed_auths_user ${auths}`,
    `    allowed_auths_operator ${auths}`,
    `    allowed_auths_admin ${auths}`,
    `    guid b1234567${process.pid.toString(16).padStart(8, "0").slice(-8)}${index.toString(16).padStart(16, "0")}`,
    "  endlan",
    `  chassis_control "${chassis}"`,
    `  user 2 true "${username}" "${password}" admin 10 ${auths}`,
    "",
  ].join("\n");
}

async function startIpmiSim(dir: string, port: number) {
  const log = openSync(join(dir, "ipmi_sim.log"), "a");
  let child: ChildProcess;
  try {
    child = spawn("ipmi_sim", ["-n", "-c", "lan.conf", "-f", "bmc.emu", "-s", join(dir, "state")], { cwd: dir, stdio: ["ignore", log, log] });
  } finally {
    closeSync(log);
  }
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", () => {
      exited = true;
      resolve();
    });
    child.once("error", () => {
      exited = true;
      resolve();
    });
  });
  const ready = await until(async () => exited || (await udpBoundBy(child.pid!, port)), 5_000);
  if (exited || !ready) {
    if (!exited) child.kill("SIGKILL");
    await exit;
    throw new Error(`ipmi_sim on udp/${port} did not start: ${await readFile(join(dir, "ipmi_sim.log"), "utf8").catch(() => "")}`);
  }
  return { child, port, exit, exited: () => exited };
}

function parseLines(text: string): Array<[number, ...string[]]> {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((line) => {
      const [stamp, ...rest] = line.trim().split(/\s+/);
      return [Number(stamp) * 1000, ...rest] as [number, ...string[]];
    });
}

function readPid(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Running and not a zombie. */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  if (stat === null) return false;
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

async function gone(pid: number): Promise<boolean> {
  return readFile(`/proc/${pid}/stat`, "utf8").then(
    () => false,
    () => true,
  );
}

/** Guards against PID reuse: only a process whose comm is QEMU's is ever signalled. */
function isQemu(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("qemu-system");
  } catch {
    return false;
  }
}

function randomMac(): string {
  const bytes = [0x52, 0x54, 0x00, 0xd5, Math.floor(Math.random() * 256), Math.floor(Math.random() * 256)];
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

