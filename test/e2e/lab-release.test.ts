import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestDatabase } from "../support/postgres.ts";
import { labInventoryYaml } from "../support/lab/inventory.ts";
import { ensureInstallerPayload, INSTALL_MARKER, type InstallerPayload } from "../support/lab/payload.ts";
import { assertLabInstalled, startLabServer, waitUntil, type LabServer } from "../support/lab/server-vm.ts";
import { startPlatform, type Platform } from "./platform.ts";
import { runBin, Running } from "./support.ts";

/**
 * Issue 5's release, end to end in the lab: `dv up` + `dv worker --service
 * maskin` as a user runs them, one lab server (QEMU VM behind an ipmi_sim
 * BMC) with a small (64 MiB) disk. `dvce host provision --wait` installs it:
 * the stand-in installer writes `DVINSTALLED <MAC>` into the disk's first and
 * last MiB. Then `dvce host release --wait`: the release powers it off, asks
 * for the wipe, sets boot pxe and powers it on; the boot service serves the
 * wipe image (the same busybox initrd, DV_WIPE_ASSETS_DIR, given
 * `dv.wipe.callback=`), whose init zeroes /dev/vda and calls back; the host
 * is back in the pool. The disk is read from the host side afterwards
 * (qemu-img convert of the VM's qcow2): the marker is gone, every byte is zero.
 */
const DC = "lab1";
const DISK_MIB = 64;

describe("lab: dvce host release wipes the server's disk through the boot service's wipe image, then returns it to the pool", () => {
  let payload: InstallerPayload;
  let database: TestDatabase;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let serverEnv: NodeJS.ProcessEnv;
  let api: string;
  let apiPort: number;
  let platform: Platform | undefined;
  let up: Running | undefined;
  let worker: Running | undefined;
  let node: LabServer | undefined;
  let projectId: string;

  const hostEvents = async (hostId: string) => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ event_type: string; data: Record<string, unknown> }>(
        "select event_type, data from eventstore.events where stream_id = $1 order by stream_position",
        [`maskin-host-${hostId}`],
      );
      return rows;
    } finally {
      await client.end();
    }
  };
  const everything = async () =>
    [`${node ? await node.describe() : "no lab server"}`, `--- dv up${up ? `\n${up.output}` : ": not started"}`, `--- dv worker${worker ? `\n${worker.output}` : ": not started"}`].join("\n");

  beforeAll(async () => {
    assertLabInstalled();
    payload = await ensureInstallerPayload();
    platform = await startPlatform({
      label: "labrel",
      tenant: "lab-tenant",
      project: "metal",
      beforeUp: async (port) => {
        node = await startLabServer({ name: "node-01", bootUrl: `http://10.0.2.2:${port}/boot/ipxe?mac=\${net0/mac}`, diskMib: DISK_MIB });
      },
      serverEnv: (port) => ({
        DV_DATACENTER: DC,
        DV_BOOT_BASE_URL: `http://10.0.2.2:${port}`,
        DV_BOOT_ASSETS_DIR: payload.dir,
        DV_BOOT_KERNEL_ARGS: "console=ttyS0 panic=-1 quiet",
        // The wipe image: the same stand-in initrd; `dv.wipe.callback=` makes its init wipe instead of install.
        DV_WIPE_ASSETS_DIR: payload.dir,
        DV_WIPE_KERNEL_ARGS: "console=ttyS0 panic=-1 quiet",
      }),
    });
    ({ database, dir, env, serverEnv, api, apiPort, up, projectId } = platform);
    worker = new Running("dv", ["worker", "--service", "maskin", "--datacenter", DC], serverEnv);

    const inventory = join(dir, "inventory.yaml");
    await writeFile(inventory, labInventoryYaml(DC, [node!]));
    const imported = await runBin("dvce", ["inventory", "import", inventory], env);
    expect(imported.code, `${imported.stdout}\n${imported.stderr}`).toBe(0);
    await worker.waitFor("the maskin worker to be ready", () => /^ready: /m.test(worker!.stdout), 60_000);
  }, 180_000);

  afterAll(async () => {
    await worker?.ensureDead();
    await node?.stop();
    await platform?.dispose();
  });

  it("provision writes the marker to the disk; release --wait netboots the wiper, which zeroes the disk and reports; the host is available again", async () => {
    const server = node!;
    const got = await runBin("dvce", ["host", "get", "node-01", "--datacenter", DC, "--output", "json"], env);
    expect(got.code, got.stderr).toBe(0);
    const hostId = JSON.parse(got.stdout).id as string;

    const provision = await runBin("dvce", ["host", "provision", "node-01", "--project", projectId, "--wait"], env, 200_000);
    expect(provision.code, `${provision.stdout}\n${provision.stderr}\n${await everything()}`).toBe(0);
    await waitUntil("the installed VM to power itself off", async () => !(await server.powered()), 60_000, everything);
    const installed = await server.readDisk();
    expect(installed.length).toBe(DISK_MIB << 20);
    const marker = Buffer.from(`${INSTALL_MARKER} ${server.mac}`);
    // The installer left its marker in the first and the last MiB: what the release must remove.
    expect(installed.subarray(0, 1 << 20).indexOf(marker), await everything()).toBe(0);
    expect(installed.subarray(installed.length - (1 << 20)).indexOf(marker)).toBe(0);

    const callsBefore = (await server.chassisLog()).length;
    const t0 = Date.now();
    const release = await runBin("dvce", ["host", "release", "node-01", "--wait"], env, 200_000);
    const took = Date.now() - t0;
    expect(release.code, `${release.stdout}\n${release.stderr}\n${await everything()}`).toBe(0);

    // What the BMC was told for the release: boot pxe, then power on (the host was off already: no power off sent).
    const calls = (await server.chassisLog()).slice(callsBefore).filter((c) => c.op === "set").map((c) => c.args.join(" "));
    expect(calls.indexOf("boot pxe"), calls.join("\n")).toBeGreaterThanOrEqual(0);
    expect(calls.indexOf("power 1")).toBeGreaterThan(calls.indexOf("boot pxe"));
    expect(calls.filter((c) => c === "power 1")).toEqual(["power 1"]);
    // The VM netbooted twice: the installer, then the wiper.
    expect((await server.vmLog()).filter((e) => e.what === "start").map((e) => e.details.boot)).toEqual(["pxe", "pxe"]);
    const serial = await server.serialLog();
    expect(serial).toMatch(new RegExp(`dv\\.wipe\\.callback=http://10\\.0\\.2\\.2:${apiPort}/boot/wipe-callback/${hostId}\\?token=\\S+`));
    expect(serial).toContain(`DV-WIPER: wiped /dev/vda (${DISK_MIB << 20} bytes): succeeded`);
    expect(serial).toContain("DV-WIPER: callback ok");

    // The host's stream: the wipe was asked for, served, reported; only then released.
    const events = await hostEvents(hostId);
    const types = events.map((e) => e.event_type);
    const order = ["HostReleaseStarted", "HostWipeRequested", "HostWipeNetbootFetched", "HostWipeReported", "HostReleased"].map((t) => types.indexOf(t));
    expect(order.every((i) => i >= 0), types.join(", ")).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(events.find((e) => e.event_type === "HostWipeNetbootFetched")!.data).toMatchObject({ mac: server.mac });
    expect(events.find((e) => e.event_type === "HostWipeReported")!.data).toMatchObject({ outcome: "succeeded", devices: ["/dev/vda"], bytesWiped: DISK_MIB << 20 });

    // The wiper powered the VM off; the disk, read from the host side, holds no marker and no byte but zero.
    await waitUntil("the wiped VM to be off", async () => !(await server.powered()), 60_000, everything);
    const wiped = await server.readDisk();
    expect(wiped.length).toBe(DISK_MIB << 20);
    expect(wiped.indexOf(Buffer.from(INSTALL_MARKER))).toBe(-1);
    expect(wiped.every((byte) => byte === 0)).toBe(true);

    // ...and the API shows it available (back in the pool), no longer the project's.
    const token = (await runBin("dvid", ["token"], env)).stdout.trim();
    let status: Record<string, unknown> = {};
    await waitUntil("GET /v1/hosts/{id}/status to show the host available", async () => {
      const response = await fetch(`${api}/v1/hosts/${hostId}/status`, { headers: { authorization: `Bearer ${token}` } });
      status = (await response.json()) as Record<string, unknown>;
      return status.state === "available";
    }, 15_000, () => JSON.stringify(status));
    expect(status.projectId ?? null).toBeNull();
    // Free in the pool: its last pool event gives it back.
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ event_type: string; data: Record<string, unknown> }>(
        "select event_type, data from eventstore.events where stream_id = $1 order by stream_position",
        [`maskin-pool-${DC}`],
      );
      expect(rows.filter((r) => r.data.hostId === hostId).map((r) => r.event_type)).toEqual(["HostAllocated", "HostReturnedToPool"]);
    } finally {
      await client.end();
    }
    console.log(`lab e2e: release --wait (wipe of ${DISK_MIB} MiB) took ${took} ms`);
  }, 480_000);
});
