import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeUdpPorts, onPath, udpBoundBy } from "./local-peers.ts";

/**
 * Simulated BMCs for adapter tests: one OpenIPMI `ipmi_sim` process per BMC,
 * each on its own free UDP port on 127.0.0.1 with its own state directory
 * (users changed over IPMI persist there and would override lan.conf, so each
 * start gets a fresh one). The BMC's "hardware" is a small chassis_control
 * program that keeps power/boot/identify in plain files and logs every call
 * with a wall-clock timestamp, so a test can check what the BMC really did.
 *
 * Learned from ../shared/lab/01-bmc-ipmi-sim.sh:
 * - chassis power only works when the MC has a chassis_control program; it is
 *   run as `PROG ARGS get power` (prints `power:0|1`) and `PROG ARGS set power "1"`,
 *   `set boot "pxe"`, `set reset "1"`, `set shutdown "1"`, `set identify "15 0"`;
 *   `get boot` must print a valid name because `bootdev` asks for it first;
 * - power cycle is `set power 0`, then the BMC polls `get power` once a second
 *   and sends `set power 1` (about 1–3 s later);
 * - the program runs synchronously in ipmi_sim's event loop: it must be quick.
 */

export const IPMI_INSTALL_HINT = "apt-get install --no-install-recommends openipmi ipmitool";

export interface ChassisCall {
  /** Wall-clock milliseconds since the epoch (fractional). */
  readonly at: number;
  readonly op: "get" | "set" | "check";
  readonly args: readonly string[];
}

export interface SimulatedBmc {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
  readonly dir: string;
  readonly pid: number;
  /** What the chassis program holds: the "hardware" truth, not the BMC's answer. */
  power(): Promise<"on" | "off">;
  /** Boot flag as last set through the chassis program (`default` when never set). */
  bootFlag(): Promise<string>;
  chassisLog(): Promise<ChassisCall[]>;
  /** Sets the "hardware" power directly, as if someone pressed the button. */
  setPower(state: "on" | "off"): Promise<void>;
  stop(): Promise<void>;
}

export interface IpmiSimLab {
  readonly bmcs: readonly SimulatedBmc[];
  readonly dir: string;
  stop(): Promise<void>;
}

export interface IpmiSimOptions {
  readonly username?: string;
  /** IPMI passwords are at most 20 bytes (16 for IPMI 1.5 users). */
  readonly password?: string;
  /** Without a chassis program the BMC refuses power and boot commands ("Invalid data field"). */
  readonly chassisControl?: boolean;
}

/** Fails with the install command when the tools are missing. */
export function assertIpmiToolsInstalled(): void {
  const missing = ["ipmi_sim", "ipmitool"].filter((tool) => !onPath(tool));
  if (missing.length > 0) {
    throw new Error(`${missing.join(" and ")} not found in PATH: the BMC adapter tests need real peers. Install them with: ${IPMI_INSTALL_HINT}`);
  }
}

export async function startIpmiSims(count: number, options: IpmiSimOptions = {}): Promise<IpmiSimLab> {
  assertIpmiToolsInstalled();
  const root = await mkdtemp(join(tmpdir(), "dv-ipmi-sim-"));
  const script = join(root, "chassis.sh");
  await writeFile(script, CHASSIS_PROGRAM);
  await chmod(script, 0o755);

  const bmcs: SimulatedBmc[] = [];
  try {
    const ports = await freeUdpPorts(count);
    for (let i = 0; i < count; i++) {
      bmcs.push(await startWithRetry(root, script, `bmc${i + 1}`, ports[i]!, options));
    }
  } catch (error) {
    await Promise.all(bmcs.map((b) => b.stop()));
    await rm(root, { recursive: true, force: true });
    throw error;
  }
  return {
    bmcs,
    dir: root,
    async stop() {
      await Promise.all(bmcs.map((b) => b.stop()));
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Polls `check` every 50 ms until it is true; fails after `timeoutMs`. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------

// `PROG DIR get|set|check ARGS...`; ipmi_sim quotes set values ("1"), the shell unquotes them.
const CHASSIS_PROGRAM = `#!/bin/sh
d=$1; shift; op=$1; shift
echo "$(date +%s.%N) $op $*" >> "$d/chassis.log"
case "$op" in
get) for n in "$@"; do case $n in
       power) echo "power:$(cat "$d/power" 2>/dev/null || echo 0)";;
       boot)  echo "boot:$(cat "$d/boot" 2>/dev/null || echo default)";;
       *)     echo "$n:0";;
     esac; done;;
set) while [ $# -ge 2 ]; do echo "$2" > "$d/$1.new" && mv "$d/$1.new" "$d/$1"; shift 2; done;;
esac
exit 0
`;

const EMU = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`;

function lanConf(name: string, port: number, username: string, password: string, chassis: string | null, index: number): string {
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
    `    guid ${(0xa1234567_89abcdefn).toString(16)}${index.toString(16).padStart(16, "0")}`,
    "  endlan",
    ...(chassis ? [`  chassis_control "${chassis}"`] : []),
    `  user 2 true "${username}" "${password}" admin 10 ${auths}`,
    "",
  ].join("\n");
}

let bmcIndex = 0;

/** The port was free when picked; if something took it meanwhile, ipmi_sim exits ("Unable to bind") and gets another. */
async function startWithRetry(root: string, script: string, name: string, port: number, options: IpmiSimOptions): Promise<SimulatedBmc> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOne(root, script, name, port, options);
    } catch (error) {
      if (attempt >= 3 || !/Unable to bind/.test(String(error))) throw error;
      await rm(join(root, name), { recursive: true, force: true });
      [port] = (await freeUdpPorts(1)) as [number];
    }
  }
}

// A test process that ends without stop() (a crash, a timeout) must not leave BMCs behind.
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

async function startOne(root: string, script: string, name: string, port: number, options: IpmiSimOptions): Promise<SimulatedBmc> {
  const username = options.username ?? "admin";
  const password = options.password ?? "password";
  const dir = join(root, name);
  await mkdir(join(dir, "state"), { recursive: true });
  const chassis = options.chassisControl === false ? null : `${script} ${dir}`;
  await writeFile(join(dir, "lan.conf"), lanConf(name, port, username, password, chassis, ++bmcIndex));
  await writeFile(join(dir, "bmc.emu"), EMU);

  const log = openSync(join(dir, "ipmi_sim.log"), "a");
  let child: ChildProcess;
  try {
    child = spawn("ipmi_sim", ["-n", "-c", "lan.conf", "-f", "bmc.emu", "-s", join(dir, "state")], {
      cwd: dir,
      stdio: ["ignore", log, log],
    });
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
  running.add(child);
  const stop = async () => {
    running.delete(child);
    if (exited) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 2_000);
    await exit;
    clearTimeout(timer);
  };

  try {
    await waitFor(`${name} (ipmi_sim) to listen on udp/${port}`, async () => {
      if (exited) throw new Error(`${name}: ipmi_sim exited at start: ${await readFile(join(dir, "ipmi_sim.log"), "utf8")}`);
      return udpBoundBy(child.pid!, port);
    });
  } catch (error) {
    await stop();
    throw error;
  }

  const file = async (f: string, fallback: string) => (await readFile(join(dir, f), "utf8").catch(() => fallback)).trim();
  return {
    name,
    address: "127.0.0.1",
    port,
    username,
    password,
    dir,
    pid: child.pid!,
    power: async () => ((await file("power", "0")) === "1" ? "on" : "off"),
    bootFlag: () => file("boot", "default"),
    setPower: (state) => writeFile(join(dir, "power"), state === "on" ? "1\n" : "0\n"),
    chassisLog: async () => parseChassisLog(await file("chassis.log", "")),
    stop,
  };
}

function parseChassisLog(text: string): ChassisCall[] {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((line) => {
      const [stamp, op, ...args] = line.trim().split(/\s+/);
      return { at: Number(stamp) * 1000, op: op as ChassisCall["op"], args };
    });
}

