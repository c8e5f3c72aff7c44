import { execFile as execFileCb } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QmpClient, QmpConnectError, QmpError, QmpTimeoutError, type QmpEvent } from "../../../adapters/qemu/qmp.ts";
import { QemuRuntime, vmMac, VmNotRunningError, type VmEvent, type VmSpec } from "../../../adapters/qemu/runtime.ts";
import { assertQemuInstalled, testRuntime, until } from "./support/qemu.ts";

const execFile = promisify(execFileCb);

/**
 * The QEMU runtime against real QEMU (`-accel tcg`), with idle SeaBIOS VMs:
 * each boots from a blank qcow2 overlay, finds nothing bootable and idles,
 * which is all QMP needs. Kernel boots are in seed-boot.test.ts.
 */

let env: Awaited<ReturnType<typeof testRuntime>>;
let runtime: QemuRuntime;
let base: string;

function spec(vmId: string, extra: Partial<VmSpec> = {}): VmSpec {
  return {
    vmId,
    vcpus: 1,
    memoryMiB: 64,
    boot: { kind: "disk" },
    disk: { overlay: join(env.root, "disks", `${vmId}.qcow2`), base },
    nics: [{}],
    ...extra,
  };
}

async function collect(events: AsyncIterableIterator<VmEvent | QmpEvent>, into: string[]): Promise<void> {
  for await (const e of events) into.push(e.event);
}

beforeAll(async () => {
  await assertQemuInstalled();
  env = await testRuntime("rt");
  runtime = env.runtime;
  base = join(env.root, "base.qcow2");
  await execFile("qemu-img", ["create", "-q", "-f", "qcow2", base, "64M"]);
});

afterAll(async () => {
  await env?.cleanup();
});

describe("vmMac", () => {
  it("is deterministic, locally administered unicast, and distinct per NIC and per VM", () => {
    const a0 = vmMac("vm-a", 0);
    expect(a0).toBe(vmMac("vm-a", 0));
    expect(a0).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const first = Number.parseInt(a0.slice(0, 2), 16);
    expect(first & 0x02).toBe(0x02); // locally administered
    expect(first & 0x01).toBe(0); // unicast
    expect(vmMac("vm-a", 1)).not.toBe(a0);
    expect(vmMac("vm-a", 1).slice(0, 14)).toBe(a0.slice(0, 14));
    expect(vmMac("vm-b", 0)).not.toBe(a0);
    const macs = new Set(Array.from({ length: 2000 }, (_, i) => vmMac(`vm-${i}`, 0)));
    expect(macs.size).toBe(2000);
    for (const mac of macs) expect(Number.parseInt(mac.slice(0, 2), 16) & 0x03).toBe(0x02);
    expect(() => vmMac("vm-a", 256)).toThrow(RangeError);
    expect(() => vmMac("vm-a", -1)).toThrow(RangeError);
  });
});

describe("QemuRuntime against real QEMU", () => {
  it("refuses a run root whose QMP socket paths would reach 108 bytes", () => {
    expect(() => new QemuRuntime({ runRoot: `/tmp/${"x".repeat(40)}` })).toThrow(/108/);
  });

  it("starts a VM (tcg, daemonized, derived MAC, ssh forward): running, listed, start again converges", async () => {
    const s = spec("vm-life", { nics: [{ sshHostPort: 22000 + (process.pid % 5000) }] });
    const started = await runtime.start(s);
    expect(started.alreadyRunning).toBe(false);
    expect(started.macs).toEqual([vmMac("vm-life", 0)]);
    expect(started.startMs).toBeGreaterThan(0);

    expect(await runtime.status("vm-life")).toEqual({ vmId: "vm-life", state: "running", pid: started.pid });
    const argv = (await readFile(`/proc/${started.pid}/cmdline`, "utf8")).split("\0");
    expect(argv).toEqual(expect.arrayContaining(["-accel", "tcg", "-daemonize"]));
    expect(argv.join(" ")).toContain(`mac=${vmMac("vm-life", 0)}`);
    expect(argv.join(" ")).toContain(`hostfwd=tcp:127.0.0.1:${s.nics![0]!.sshHostPort}-:22`);
    expect((await runtime.list()).map((p) => [p.vmId, p.pid])).toContainEqual(["vm-life", started.pid]);

    const again = await runtime.start(s);
    expect(again).toMatchObject({ alreadyRunning: true, pid: started.pid });
  });

  it("QMP client: greeting, id-correlated commands, STOP/RESUME events, typed errors", async () => {
    const pid = (await runtime.status("vm-life")).pid!;
    const qmp = await QmpClient.connect(join(runtime.runDir("vm-life"), "qmp.sock"));
    try {
      expect(qmp.qemuVersion?.qemu.major).toBeGreaterThanOrEqual(7);
      const seen: string[] = [];
      const stream = qmp.events();
      const collecting = collect(stream, seen);
      const stopped = qmp.waitForEvent("STOP", { timeoutMs: 5_000 });
      // Several commands in flight at once: answers are matched by id, whatever their order.
      const [, status, name] = await Promise.all([
        qmp.execute("stop"),
        qmp.execute<{ status: string }>("query-status"),
        qmp.execute<{ name: string }>("query-name"),
      ]);
      await stopped;
      expect(status.status).toBe("paused");
      expect(name.name).toBe("vm-life");
      const resumed = qmp.waitForEvent("RESUME", { timeoutMs: 5_000 });
      await qmp.execute("cont");
      await resumed;
      expect((await qmp.execute<{ status: string }>("query-status")).status).toBe("running");

      const error = await qmp.execute("no-such-command").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QmpError);
      expect((error as QmpError).errorClass).toBe("CommandNotFound");
      const bad = await qmp.execute("device_del", { id: "nope" }).catch((e: unknown) => e);
      expect(bad).toMatchObject({ name: "QmpError", errorClass: "DeviceNotFound" });
      expect(await qmp.waitForEvent("NEVER", { timeoutMs: 100 }).catch((e: unknown) => e)).toBeInstanceOf(QmpTimeoutError);

      await stream.return!();
      await collecting;
      expect(seen).toEqual(["STOP", "RESUME"]);
    } finally {
      qmp.close();
    }
    expect(qmp.isClosed).toBe(true);
    // The runtime can connect again once the client above is gone.
    expect(await runtime.status("vm-life")).toMatchObject({ state: "running", pid });
  });

  it("reboot: system_reset, the RESET event reaches a watcher on the second monitor", async () => {
    const watch = await runtime.watch("vm-life");
    const seen: string[] = [];
    const collecting = collect(watch.events, seen);
    await runtime.reboot("vm-life");
    expect(await until(() => seen.includes("RESET"), 5_000)).toBe(true);
    expect((await runtime.status("vm-life")).state).toBe("running");
    watch.close();
    await collecting;
  });

  it("stop: ACPI power button (no guest OS to obey it), then quit after the timeout: absent, the watcher's stream ends", async () => {
    const pid = (await runtime.status("vm-life")).pid!;
    const watch = await runtime.watch("vm-life");
    const seen: string[] = [];
    const collecting = collect(watch.events, seen);
    const result = await runtime.stop("vm-life", { acpiTimeoutMs: 800 });
    expect(result.method).toBe("quit");
    expect(result.durationMs).toBeGreaterThanOrEqual(800);
    await collecting; // the stream ends when QEMU exits
    expect(seen).toEqual(expect.arrayContaining(["POWERDOWN", "SHUTDOWN"]));
    expect(seen.indexOf("POWERDOWN")).toBeLessThan(seen.indexOf("SHUTDOWN"));
    expect(await runtime.status("vm-life")).toEqual({ vmId: "vm-life", state: "absent", pid: null });
    expect((await runtime.list()).map((p) => p.pid)).not.toContain(pid);
    expect((await runtime.stop("vm-life")).method).toBe("absent");
    await expect(runtime.reboot("vm-life")).rejects.toBeInstanceOf(VmNotRunningError);
    await expect(QmpClient.connect(join(runtime.runDir("vm-life"), "qmp.sock"), { timeoutMs: 200 })).rejects.toBeInstanceOf(QmpConnectError);
  });

  it("a QEMU killed by hand is absent at once (zombie-aware), and start brings it back on the same overlay", async () => {
    const first = await runtime.start(spec("vm-drift"));
    expect((await runtime.status("vm-drift")).state).toBe("running");
    process.kill(first.pid, "SIGKILL");
    // The daemonized QEMU is PID 1's child and lingers as a zombie; kill -0 would still succeed.
    expect(await until(async () => (await runtime.status("vm-drift")).state === "absent", 2_000)).toBe(true);
    expect((await runtime.list()).map((p) => p.vmId)).not.toContain("vm-drift");

    const again = await runtime.start(spec("vm-drift"));
    expect(again.alreadyRunning).toBe(false);
    expect(again.pid).not.toBe(first.pid);
    expect((await runtime.status("vm-drift")).state).toBe("running");
    expect(await runtime.kill("vm-drift")).toMatchObject({ method: "kill" });
    expect((await runtime.status("vm-drift")).state).toBe("absent");
  });

  it("two VMs at once, each on its own overlay backed by one shared base; list() finds a process whose pidfile is gone", async () => {
    const [a, b] = await Promise.all([runtime.start(spec("vm-a")), runtime.start(spec("vm-b"))]);
    expect(a.pid).not.toBe(b.pid);
    for (const vmId of ["vm-a", "vm-b"]) {
      expect((await runtime.status(vmId)).state).toBe("running");
      const { stdout } = await execFile("qemu-img", ["info", "-U", "--output=json", join(env.root, "disks", `${vmId}.qcow2`)]);
      const info = JSON.parse(stdout) as { format: string; "backing-filename": string; "backing-filename-format": string };
      expect(info).toMatchObject({ format: "qcow2", "backing-filename": base, "backing-filename-format": "qcow2" });
    }
    // A disk can't be used by two running VMs: QEMU's image lock refuses the second writer.
    const clash = await runtime
      .start({ ...spec("vm-c"), disk: { overlay: join(env.root, "disks", "vm-a.qcow2"), base } })
      .catch((e: unknown) => e as Error);
    expect(String(clash)).toMatch(/lock/i);
    // An existing overlay on another base is refused, not silently used.
    const otherBase = join(env.root, "other.qcow2");
    await execFile("qemu-img", ["create", "-q", "-f", "qcow2", otherBase, "64M"]);
    await expect(runtime.start({ ...spec("vm-d"), disk: { overlay: join(env.root, "disks", "vm-b.qcow2"), base: otherBase } })).rejects.toThrow(/base/);

    // A process without its pidfile (e.g. a crash between spawn and record) is still this runtime's.
    await execFile("rm", [join(runtime.runDir("vm-b"), "qemu.pid")]);
    expect((await runtime.list()).map((p) => [p.vmId, p.pid])).toEqual([
      ["vm-a", a.pid],
      ["vm-b", b.pid],
    ]);
    await Promise.all([runtime.stop("vm-a", { acpiTimeoutMs: 100 }), runtime.kill("vm-a")]);
    await execFile("kill", ["-9", String(b.pid)]);
    expect(await until(async () => (await runtime.list()).length === 0, 3_000)).toBe(true);
  });

  it("readConsole follows the serial log in chunks without splitting a UTF-8 character", async () => {
    const text = "boot: aé€😀 ok\nline 2 ✓\n".repeat(3);
    await mkdir(runtime.runDir("vm-console"), { recursive: true });
    await writeFile(runtime.consoleLogPath("vm-console"), text);
    for (const maxBytes of [4, 5, 7]) {
      let followed = "";
      let offset = 0;
      for (;;) {
        const chunk = await runtime.readConsole("vm-console", { offset, maxBytes });
        expect(chunk.text).not.toContain("\uFFFD");
        if (chunk.nextOffset === offset) break;
        followed += chunk.text;
        offset = chunk.nextOffset;
      }
      expect(followed).toBe(text);
      expect(offset).toBe(Buffer.byteLength(text));
    }
  });

  it("startPaused: prelaunch until resume", async () => {
    await runtime.start(spec("vm-paused", { startPaused: true, nics: [] }));
    expect((await runtime.status("vm-paused")).state).toBe("prelaunch");
    await runtime.resume("vm-paused");
    expect((await runtime.status("vm-paused")).state).toBe("running");
    expect((await runtime.stop("vm-paused", { acpiTimeoutMs: 200 })).method).toBe("quit");
  });
});
