import { execFile as execFileCb } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QemuRuntime, vmMac } from "../../../adapters/qemu/runtime.ts";
import { buildSeedIso, seedFiles } from "../../../adapters/qemu/seed.ts";
import { ensureSeedPayload, type SeedPayload } from "./support/seed-payload.ts";
import { assertQemuInstalled, testRuntime, until } from "./support/qemu.ts";

const execFile = promisify(execFileCb);

let env: Awaited<ReturnType<typeof testRuntime>>;
let runtime: QemuRuntime;
let payload: SeedPayload;

beforeAll(async () => {
  await assertQemuInstalled();
  env = await testRuntime("seed");
  runtime = env.runtime;
  payload = await ensureSeedPayload();
}, 120_000);

afterAll(async () => {
  await env?.cleanup();
});

describe("NoCloud seed", () => {
  it("renders meta-data, user-data and network-config as YAML nothing can break out of", () => {
    const files = seedFiles({
      instanceId: "vm-1",
      hostname: "web-1.example.net",
      sshAuthorizedKeys: ["ssh-ed25519 AAAAC3Nza tenant@laptop", "ssh-ed25519 AAAAC3Nzb dv-debug\nhostname: evil"],
      nicMacs: [vmMac("vm-1", 0), vmMac("vm-1", 1)],
    });
    expect(parse(files["meta-data"])).toEqual({ "instance-id": "vm-1", "local-hostname": "web-1.example.net" });
    expect(files["user-data"].startsWith("#cloud-config\n")).toBe(true);
    expect(parse(files["user-data"])).toEqual({
      hostname: "web-1",
      fqdn: "web-1.example.net",
      ssh_authorized_keys: ["ssh-ed25519 AAAAC3Nza tenant@laptop", "ssh-ed25519 AAAAC3Nzb dv-debug\nhostname: evil"],
    });
    expect(parse(files["network-config"])).toEqual({
      version: 2,
      ethernets: {
        nic0: { match: { macaddress: vmMac("vm-1", 0) }, "set-name": "eth0", dhcp4: true },
        nic1: { match: { macaddress: vmMac("vm-1", 1) }, "set-name": "eth1", dhcp4: true },
      },
    });
    expect(() => seedFiles({ instanceId: "vm-1", hostname: "bad host\nx: y" })).toThrow(RangeError);
    expect(() => seedFiles({ instanceId: "vm 1", hostname: "ok" })).toThrow(RangeError);
    expect(() => seedFiles({ instanceId: "vm-1", hostname: "ok", userData: "plain text" })).toThrow(RangeError);
  });

  it("builds an ISO9660 volume labelled cidata holding the three files (genisoimage)", async () => {
    const iso = await buildSeedIso(join(env.root, "iso", "seed.iso"), { instanceId: "vm-iso", hostname: "iso-host" });
    const { stdout: pvd } = await execFile("isoinfo", ["-d", "-i", iso]);
    expect(pvd).toMatch(/^Volume id: cidata$/m);
    expect(pvd).toMatch(/Joliet/);
    expect(pvd).toMatch(/Rock Ridge/);
    const { stdout: metaData } = await execFile("isoinfo", ["-i", iso, "-R", "-x", "/meta-data"]);
    expect(parse(metaData)).toEqual({ "instance-id": "vm-iso", "local-hostname": "iso-host" });
    const { stdout: listing } = await execFile("isoinfo", ["-i", iso, "-R", "-f"]);
    expect(listing.split("\n").filter(Boolean).sort()).toEqual(["/meta-data", "/network-config", "/user-data"]);
  });
});

describe("a VM boots the lab's kernel + busybox initrd with its NoCloud seed as a CD-ROM", () => {
  it("its serial log shows the hostname it read from the seed; reboot boots it again; stop's ACPI button is obeyed", async () => {
    const vmId = "vm-seed";
    const hostname = `seedling-${randomBytes(3).toString("hex")}`; // a fresh name: a stale log can't pass
    const mac = vmMac(vmId, 0);
    const seedIso = await buildSeedIso(join(env.root, "seeds", `${vmId}.iso`), { instanceId: vmId, hostname, nicMacs: [mac] });
    const started = await runtime.start({
      vmId,
      vcpus: 1,
      memoryMiB: 256,
      boot: { kind: "kernel", kernel: payload.kernel, initrd: payload.initrd, append: payload.append },
      nics: [{ model: "e1000" }],
      seedIso,
    });
    expect(started.macs).toEqual([mac]);
    expect((await runtime.status(vmId)).state).toBe("running");

    const log = runtime.consoleLogPath(vmId);
    const serial = () => readFile(log, "utf8").catch(() => "");
    const count = (text: string, needle: string) => text.split(needle).length - 1;
    const seedLine = `DV-SEED: hostname=${hostname} instance-id=${vmId} label=cidata`;
    const waiting = "DV-SEED: waiting for the ACPI power button";
    const booted = async (times: number) => {
      const ok = await until(async () => {
        const text = await serial();
        return count(text, waiting) >= times || text.includes("no ACPI power button") || (await runtime.status(vmId)).state === "absent";
      }, 75_000);
      const text = await serial();
      expect(ok && count(text, waiting) >= times, `boot ${times} did not reach the power button wait; serial log:\n${text.slice(-3000)}`).toBe(true);
      return text;
    };

    const first = await booted(1);
    expect(count(first, seedLine)).toBe(1);
    expect(first).toContain("DV-SEED: user-data: #cloud-config");
    expect(first).not.toContain("no cidata CD-ROM found");

    // A hard reset: the same QEMU process, the guest boots again and reads its seed again.
    const pid = started.pid;
    await runtime.reboot(vmId);
    const second = await booted(2);
    expect(count(second, seedLine)).toBe(2);
    expect((await runtime.status(vmId)).pid).toBe(pid);

    // The guest obeys the ACPI power button: stop ends with "acpi", no quit needed.
    const stopped = await runtime.stop(vmId, { acpiTimeoutMs: 30_000 });
    const last = await serial();
    expect(stopped.method, last.slice(-2000)).toBe("acpi");
    expect(last).toContain("DV-SEED: ACPI power button pressed");
    expect(await runtime.status(vmId)).toEqual({ vmId, state: "absent", pid: null });
    // Following the console in chunks gives back the whole log, in order, nothing twice.
    let followed = "";
    let offset = 0;
    for (let i = 0; i < 10_000; i++) {
      const chunk = await runtime.readConsole(vmId, { offset, maxBytes: 997 });
      if (chunk.nextOffset === offset) break;
      followed += chunk.text;
      offset = chunk.nextOffset;
    }
    expect(followed).toBe(last);
    expect(await runtime.readConsole("vm-never-started")).toEqual({ text: "", nextOffset: 0, size: 0 });
    console.info(`VM ${vmId} serial log (DV-SEED lines), stop took ${stopped.durationMs} ms by ${stopped.method}:\n${last.split("\n").filter((l) => l.startsWith("DV-SEED:")).join("\n")}`);
  }, 170_000);
});
