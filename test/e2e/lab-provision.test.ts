import { createReadStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestDatabase } from "../support/postgres.ts";
import { startMiniBootServer, type MiniBootServer } from "../support/lab/http-log.ts";
import { labInventoryYaml } from "../support/lab/inventory.ts";
import { ensureInstallerPayload, type InstallerPayload } from "../support/lab/payload.ts";
import { assertLabInstalled, startLabServer, waitUntil, type LabServer } from "../support/lab/server-vm.ts";
import { startPlatform, type Platform } from "./platform.ts";
import { runBin, Running } from "./support.ts";

/**
 * The lab itself, without the platform: a QEMU VM whose BMC is ipmi_sim
 * network-boots through `ipmitool chassis bootdev pxe` + `power on` from a
 * minimal boot server, runs the stand-in installer, which calls back with its
 * MAC and powers off; the next power on boots the (blank) disk only. If this
 * fails, the provisioning tests below cannot mean anything.
 */
describe("lab: a QEMU server behind an ipmi_sim BMC netboots the stand-in installer", () => {
  let payload: InstallerPayload;
  let boot: MiniBootServer;
  let server: LabServer | undefined;
  const callbacks: URL[] = [];

  beforeAll(async () => {
    assertLabInstalled();
    payload = await ensureInstallerPayload();
    boot = await startMiniBootServer((req, res, url) => {
      const base = `http://10.0.2.2:${boot.port}`;
      if (url.pathname === "/boot/ipxe") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(`#!ipxe\nkernel ${base}/assets/vmlinuz console=ttyS0 panic=-1 quiet dv.callback=${base}/callback/lab-host?token=t0k3n\ninitrd ${base}/assets/initrd.gz\nboot\n`);
      } else if (url.pathname === "/assets/vmlinuz" || url.pathname === "/assets/initrd.gz") {
        res.writeHead(200, { "content-type": "application/octet-stream" });
        createReadStream(url.pathname.endsWith("vmlinuz") ? payload.kernel : payload.initrd).pipe(res);
      } else if (url.pathname === "/callback/lab-host") {
        callbacks.push(url);
        res.writeHead(200, { "content-type": "text/plain" });
        res.end("recorded\n");
      } else {
        res.writeHead(404);
        res.end();
      }
    });
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    await boot?.close();
  });

  it("bootdev pxe + power on: iPXE fetches the script for its MAC, the installer calls back and powers off; the next power on boots the disk only", async () => {
    server = await startLabServer({ name: "lab-host", bootUrl: `http://10.0.2.2:${boot.port}/boot/ipxe?mac=\${net0/mac}` });
    const context = async () => `${await server!.describe()}\n--- HTTP\n${boot.requests.map((r) => `${r.method} ${r.url}`).join("\n")}`;
    expect((await server.ipmitool("chassis", "power", "status")).trim()).toBe("Chassis Power is off");

    const t0 = Date.now();
    await server.ipmitool("chassis", "bootdev", "pxe");
    expect(await server.ipmitool("chassis", "bootparam", "get", "5")).toContain("Force PXE");
    await server.ipmitool("chassis", "power", "on");
    expect((await server.ipmitool("chassis", "power", "status")).trim()).toBe("Chassis Power is on");
    expect((await server.vmLog()).filter((e) => e.what === "start").map((e) => e.details.boot)).toEqual(["pxe"]);

    // The installer powers off right after its callback: an early power-off without one is a failure, not a wait.
    await waitUntil("the installer's callback", async () => callbacks.length > 0 || !(await server!.powered()), 120_000, context);
    if (callbacks.length === 0) throw new Error(`the VM powered off without calling back\n${await context()}`);
    const tCallback = Date.now() - t0;
    await waitUntil("the VM to power itself off (BMC reports off)", async () => (await server!.ipmitool("chassis", "power", "status")).includes("off"), 60_000, context);
    const tOff = Date.now() - t0;

    const paths = boot.requests.map((r) => new URL(r.url, "http://x").pathname);
    expect(paths.slice(0, 3)).toEqual(["/boot/ipxe", "/assets/vmlinuz", "/assets/initrd.gz"]);
    expect(new URL(boot.requests[0]!.url, "http://x").searchParams.get("mac")).toBe(server.mac);
    expect(callbacks).toHaveLength(1);
    expect(Object.fromEntries(callbacks[0]!.searchParams)).toMatchObject({ token: "t0k3n", mac: server.mac, outcome: "succeeded" });
    expect(await server.serialLog()).toContain("DV-INSTALLER: powering off");
    expect(await server.seabiosLog()).toMatch(/Booting from ROM/);

    // The pxe flag was one-shot: the next power on boots the blank disk only, asking the network nothing.
    const before = boot.requests.length;
    await server.ipmitool("chassis", "power", "on");
    await waitUntil("SeaBIOS to give up on the blank disk", async () => /No bootable device|Boot failed/.test(await server!.seabiosLog()), 30_000, context);
    expect(boot.requests.length).toBe(before);
    expect((await server.vmLog()).map((e) => e.what === "start" ? `start ${e.details.boot}` : e.what).filter((w) => w !== "boot-flag")).toEqual(["start pxe", "exited", "start disk"]);
    await server.ipmitool("chassis", "power", "off");
    expect(await server.powered()).toBe(false);
    console.log(`lab: callback after ${tCallback} ms, self power-off seen after ${tOff} ms`);
  }, 180_000);
});

/**
 * Issue 5's end-to-end lab test, with the platform as a user runs it: `dv up`
 * (child process, its own database and NATS namespace, no in-process
 * workers), the maskin worker as `dv worker --service maskin --datacenter
 * lab1` beside it (as near the hardware), then `dvid login`, `dv tenant/
 * project create`, `dvce inventory import` of a file naming two lab servers
 * (QEMU VMs behind ipmi_sim BMCs) and `dvce host provision HOST --project P
 * --wait`. The VM reaches the boot service at http://10.0.2.2:<port> (slirp's
 * name for the host's loopback), which serves the stand-in installer as the
 * local boot image (DV_BOOT_ASSETS_DIR).
 *
 * What is checked comes from the peers themselves, not from the platform's
 * own account: the BMC's chassis log (every call ipmi_sim made), what the
 * "hardware" did (QEMU starts with the boot order), the VM's serial console
 * and SeaBIOS log, and the events in the host's stream.
 */
describe("lab: dvce host provision drives a QEMU server through its BMC, the boot service and the installer's callback", () => {
  const DC = "lab1";
  let payload: InstallerPayload;
  let database: TestDatabase;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let serverEnv: NodeJS.ProcessEnv;
  let api: string;
  let apiPort: number;
  let up: Running | undefined;
  let worker: Running | undefined;
  const workers: Running[] = [];
  const servers: LabServer[] = [];
  let node1: LabServer;
  let node2: LabServer;
  let platform: Platform | undefined;
  let tenantId: string;
  let projectId: string;

  const startWorker = () => {
    const started = new Running("dv", ["worker", "--service", "maskin", "--datacenter", DC], serverEnv);
    workers.push(started);
    return started;
  };
  const hostEvents = async (hostId: string) => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ event_type: string; data: Record<string, unknown>; recorded_at: Date }>(
        "select event_type, data, recorded_at from eventstore.events where stream_id = $1 order by stream_position",
        [`maskin-host-${hostId}`],
      );
      return rows;
    } finally {
      await client.end();
    }
  };
  const hostIdOf = async (name: string): Promise<string> => {
    const got = await runBin("dvce", ["host", "get", name, "--datacenter", DC, "--output", "json"], env);
    expect(got.code, got.stderr).toBe(0);
    return JSON.parse(got.stdout).id as string;
  };
  const everything = async () =>
    [
      ...(await Promise.all(servers.map((s) => s.describe()))),
      `--- dv up${up ? `\n${up.output}` : ": not started"}`,
      ...workers.map((w, i) => `--- dv worker #${i + 1}\n${w.output}`),
    ].join("\n");

  beforeAll(async () => {
    assertLabInstalled();
    payload = await ensureInstallerPayload();
    platform = await startPlatform({
      label: "lab",
      tenant: "lab-tenant",
      project: "metal",
      beforeUp: async (port) => {
        const bootUrl = `http://10.0.2.2:${port}/boot/ipxe?mac=\${net0/mac}`;
        node1 = await startLabServer({ name: "node-01", bootUrl });
        servers.push(node1);
        node2 = await startLabServer({ name: "node-02", bootUrl, holdPowerOnMs: 700 });
        servers.push(node2);
      },
      // The boot service: the machines' view of it, and the stand-in installer as the local boot image.
      serverEnv: (port) => ({
        DV_DATACENTER: DC,
        DV_BOOT_BASE_URL: `http://10.0.2.2:${port}`,
        DV_BOOT_ASSETS_DIR: payload.dir,
        DV_BOOT_KERNEL_ARGS: "console=ttyS0 panic=-1 quiet",
      }),
    });
    ({ database, dir, env, serverEnv, api, apiPort, up, tenantId, projectId } = platform);
    worker = startWorker();

    const inventory = join(dir, "inventory.yaml");
    await writeFile(inventory, labInventoryYaml(DC, [node1, node2]));
    const imported = await runBin("dvce", ["inventory", "import", inventory], env);
    expect(imported.code, `${imported.stdout}\n${imported.stderr}`).toBe(0);
    await worker.waitFor("the maskin worker to be ready", () => /^ready: /m.test(worker!.stdout), 60_000);
  }, 180_000);

  afterAll(async () => {
    for (const w of workers) await w.ensureDead();
    for (const s of servers) await s.stop();
    await platform?.dispose();
  });

  it("provision --wait: bootdev pxe + power on over IPMI, iPXE fetches this host's script, the installer reports, the host is Ready and boots from disk next", async () => {
    const hostId = await hostIdOf("node-01");
    const t0 = Date.now();
    const provision = await runBin("dvce", ["host", "provision", "node-01", "--project", projectId, "--wait"], env, 170_000);
    const took = Date.now() - t0;
    expect(provision.code, `${provision.stdout}\n${provision.stderr}\n${await everything()}`).toBe(0);

    // The BMC was told: one-time boot from the network, then power on; the VM started once, NIC first.
    const calls = (await node1.chassisLog()).filter((c) => c.op === "set").map((c) => c.args.join(" "));
    expect(calls.indexOf("boot pxe"), calls.join("\n")).toBeGreaterThanOrEqual(0);
    expect(calls.indexOf("power 1")).toBeGreaterThan(calls.indexOf("boot pxe"));
    expect(calls.filter((c) => c.startsWith("power") || c.startsWith("reset"))).toEqual(["power 1"]);
    // ...and after the install, the boot device is no longer pxe.
    expect(calls.filter((c) => c.startsWith("boot ")).at(-1)).not.toBe("boot pxe");
    expect((await node1.vmLog()).filter((e) => e.what === "start").map((e) => e.details.boot)).toEqual(["pxe"]);

    // The VM's iPXE got this host's installer from the boot service, whose callback it called with its MAC.
    const serial = await node1.serialLog();
    expect(serial).toMatch(new RegExp(`dv\\.callback=http://10\\.0\\.2\\.2:${apiPort}/boot/callback/${hostId}\\?token=\\S+`));
    expect(serial).toContain("DV-INSTALLER: callback ok");
    expect(await node1.seabiosLog()).toMatch(/Booting from ROM/);

    const events = await hostEvents(hostId);
    const types = events.map((e) => e.event_type);
    for (const type of ["HostProvisioningStarted", "HostNetbootFetched", "HostInstallReported", "HostProvisioned"]) expect(types, types.join(", ")).toContain(type);
    expect(types.indexOf("HostProvisioned")).toBeGreaterThan(types.indexOf("HostInstallReported"));
    expect(events.find((e) => e.event_type === "HostNetbootFetched")!.data).toMatchObject({ mac: node1.mac });
    expect(events.find((e) => e.event_type === "HostInstallReported")!.data).toMatchObject({ outcome: "succeeded" });
    expect(events.filter((e) => e.event_type === "HostNetbootFetched")).toHaveLength(1);
    expect(events.find((e) => e.event_type === "HostProvisioned")!.data).toMatchObject({ nextBoot: "disk" });
    // ...and the API says so: Ready, next boot from disk.
    const token = (await runBin("dvid", ["token"], env)).stdout.trim();
    let status: Record<string, unknown> = {};
    await waitUntil("GET /v1/hosts/{id}/status to show the host ready", async () => {
      const response = await fetch(`${api}/v1/hosts/${hostId}/status`, { headers: { authorization: `Bearer ${token}` } });
      status = (await response.json()) as Record<string, unknown>;
      return status.state === "ready";
    }, 15_000, () => JSON.stringify(status));
    expect(status).toMatchObject({ state: "ready", nextBoot: "disk", projectId });
    const task = /task ([0-9a-f-]{36})/.exec(provision.stdout + provision.stderr)?.[1];
    if (task) {
      const got = await runBin("dv", ["task", "get", task, "--output", "json"], env);
      expect(JSON.parse(got.stdout)).toMatchObject({ status: "succeeded", kind: "maskin.host-provision" });
    }

    // The installer powered the VM off. Power on again: the one-time flag is gone, the disk boots, the network is not asked.
    await waitUntil("the installed VM to be off", async () => !(await node1.powered()), 60_000, everything);
    const seabiosBefore = (await node1.seabiosLog()).length;
    await node1.ipmitool("chassis", "power", "on");
    await waitUntil("SeaBIOS to try the disk", async () => /No bootable device|Boot failed/.test((await node1.seabiosLog()).slice(seabiosBefore)), 60_000, everything);
    expect((await node1.seabiosLog()).slice(seabiosBefore)).not.toMatch(/Booting from ROM/);
    expect((await node1.vmLog()).filter((e) => e.what === "start").map((e) => e.details.boot)).toEqual(["pxe", "disk"]);

    // Even a BMC that netboots anyway (flag forced back to pxe): the boot service answers exit, nothing installs again.
    await node1.ipmitool("chassis", "power", "off");
    await node1.ipmitool("chassis", "bootdev", "pxe");
    const serialBefore = (await node1.serialLog()).length;
    const seabiosBefore2 = (await node1.seabiosLog()).length;
    await node1.ipmitool("chassis", "power", "on");
    await waitUntil("iPXE to exit back to SeaBIOS, which then tries the disk", async () => /Booting from ROM[\s\S]*(No bootable device|Boot failed)/.test((await node1.seabiosLog()).slice(seabiosBefore2)), 90_000, everything);
    expect((await node1.serialLog()).slice(serialBefore)).not.toContain("DV-INSTALLER");
    const after = await hostEvents(hostId);
    expect(after.filter((e) => e.event_type === "HostNetbootFetched")).toHaveLength(1);
    expect(after.map((e) => e.event_type)).not.toContain("HostProvisioningFailed");
    await node1.ipmitool("chassis", "power", "off");
    console.log(`lab e2e: provision --wait took ${took} ms`);
  }, 240_000);

  it("killing the maskin worker right after it powered the host on: the restarted worker finishes the task without a second power on or cycle", async () => {
    const hostId = await hostIdOf("node-02");
    const t0 = Date.now();
    const provision = new Running("dvce", ["host", "provision", "node-02", "--project", projectId, "--wait"], env);
    try {
      // node-02's chassis holds its answer to `set power 1` for 700 ms after QEMU started: the worker is
      // still waiting for ipmitool then, so the kill lands after the side effect and before its result.
      await waitUntil("the BMC to power node-02 on", async () => (await node2.vmLog()).some((e) => e.what === "start"), 120_000, everything);
      const killedAt = Date.now();
      worker!.kill("SIGKILL");
      await worker!.exited;
      worker = startWorker();
      const finished = await Promise.race([
        provision.exited,
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 170_000)),
      ]);
      expect(finished, `provision did not finish\n${provision.output}\n${await everything()}`).not.toBeNull();
      expect(finished!.code, `${provision.output}\n${await everything()}`).toBe(0);
      const took = Date.now() - t0;

      const calls = (await node2.chassisLog()).filter((c) => c.op === "set");
      const power = calls.filter((c) => ["power", "reset"].includes(c.args[0]!));
      // The VM started exactly once (the BMC may have heard the same `set power 1` twice if ipmitool
      // re-sent it while the chassis held its answer: that starts nothing).
      const vm = await node2.vmLog();
      const timeline = () =>
        [
          `killed the worker at ${new Date(killedAt).toISOString()}; what node-02's "hardware" did:`,
          ...vm.map((e) => `  ${new Date(e.at).toISOString()} (+${((e.at - killedAt) / 1000).toFixed(1)} s after the kill) ${e.what} ${Object.entries(e.details).map(([k, v]) => `${k}=${v}`).join(" ")}`),
          "A start after the kill is a second power on: the redelivered power request found the installed host off (the installer powers it off) and powered it on again.",
        ].join("\n");
      expect(vm.filter((e) => e.what === "start").map((e) => e.details.boot), `${timeline()}\n${await everything()}`).toEqual(["pxe"]);
      expect(power.filter((c) => c.args.join(" ") !== "power 1"), await everything()).toEqual([]);
      const powerOnsAfterKill = power.filter((c) => c.at > killedAt + 1_500);
      expect(powerOnsAfterKill, await everything()).toEqual([]);

      const types = (await hostEvents(hostId)).map((e) => e.event_type);
      expect(types, types.join(", ")).toContain("HostProvisioned");
      expect(types.filter((t) => t === "HostNetbootFetched")).toHaveLength(1);
      console.log(`lab e2e: provision with a killed worker took ${took} ms; kill at +${killedAt - t0} ms`);
    } finally {
      await provision.ensureDead();
    }
  }, 240_000);
});
