import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageCatalogFromEnv } from "../../../adapters/boot/catalog.ts";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import { ensureInstallerPayload } from "../../support/lab/payload.ts";
import { assertLabInstalled, startLabServer, waitUntil, type LabServer } from "../../support/lab/server-vm.ts";
import { createApiHarness, type ApiHarness } from "../api/support/harness.ts";
import { actors } from "../api/support/test-auth.ts";

/**
 * The boot service against real iPXE: a QEMU VM (iPXE ROM, slirp) behind an
 * ipmi_sim BMC netboots from a listening server, runs the script the service
 * wrote for its MAC, loads the catalog's stand-in kernel + initrd (the lab's
 * Debian kernel and busybox installer, configured like a Talos image) and the
 * installer calls dv.callback. Without the saga: the test records
 * StartProvisioning itself. Then a second forced netboot gets `exit` and the
 * firmware goes on to the disk.
 */
let api: ApiHarness;
let server: LabServer | undefined;
let assets: string;
const logLines: string[] = [];
const MAC = "52:54:00:d5:b0:01";

beforeAll(async () => {
  assertLabInstalled();
  const payload = await ensureInstallerPayload();
  assets = await mkdtemp(join(tmpdir(), "dv-boot-lab-"));
  await copyFile(payload.kernel, join(assets, "vmlinuz"));
  await copyFile(payload.initrd, join(assets, "initrd.gz"));
  const catalog = await imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: assets, DV_TALOS_VERSION: "v1.9.5", DV_BOOT_KERNEL_ARGS: "console=ttyS0 panic=-1 quiet" });
  // No baseUrl: the script's URLs use the Host iPXE asked (10.0.2.2:<port>, slirp's way to the host).
  api = await createApiHarness({ logger: { level: "info", stream: { write: (line: string) => void logLines.push(line) } }, boot: { catalog: catalog! } });
}, 180_000);

afterAll(async () => {
  await server?.stop();
  await api?.dispose();
  if (assets) await rm(assets, { recursive: true, force: true });
});

const bootRequests = () =>
  logLines
    .map((line) => JSON.parse(line) as { msg?: string; req?: { url?: string } })
    .filter((entry) => entry.msg === "incoming request" && entry.req?.url?.startsWith("/boot/"))
    .map((entry) => entry.req!.url!);

describe("boot service with real iPXE (QEMU + ipmi_sim lab)", () => {
  it("the VM runs its script, loads kernel and initrd, the installer reports once; the next netboot gets exit and the firmware boots the disk", async () => {
    const address = await api.app.listen({ host: "127.0.0.1", port: 0 });
    const port = new URL(address).port;
    const imported = await api.call(actors.platformAdmin(), {
      method: "POST",
      url: "/v1/inventory/import",
      payload: { document: { datacenters: [{ name: "osl1", racks: [{ name: "r01", hosts: [{ name: "lab-1", serial: "LAB1", macs: [MAC] }] }] }] } },
    });
    expect(imported.statusCode, imported.body).toBe(200);
    const hostId: string = imported.json().items.find((i: { kind: string }) => i.kind === "host").id;
    const saga = { actor: { kind: "service" as const, id: "saga/maskin" }, correlationId: "lab", scope: { tenantId: PLATFORM_TENANT } };
    await executeHostCommand(api.db.store, { type: "StartProvisioning", hostId, datacenter: "osl1", taskId: "lab-task", tenantId: "acme", projectId: "web", environmentId: null, role: "worker", at: new Date().toISOString() }, saga);
    await executeHostCommand(api.db.store, { type: "RecordNetbootRequested", hostId, taskId: "lab-task", at: new Date().toISOString() }, saga);

    server = await startLabServer({ name: "boot-lab", mac: MAC, bootUrl: `http://10.0.2.2:${port}/boot/ipxe?mac=\${net0/mac}` });
    const events = async () =>
      (await api.db.pool.query<{ type: string }>("select event_type as type from eventstore.events where stream_id = $1 order by stream_position", [`maskin-host-${hostId}`])).rows.map((r) => r.type);
    const context = async () => `${await server!.describe()}\n--- boot requests\n${bootRequests().join("\n")}`;

    await server.ipmitool("chassis", "bootdev", "pxe");
    await server.ipmitool("chassis", "power", "on");
    await waitUntil("the installer's report", async () => (await events()).includes("HostInstallReported"), 180_000, context);
    expect(await events()).toEqual(["HostProvisioningStarted", "HostNetbootRequested", "HostNetbootFetched", "HostInstallReported"]);
    const paths = bootRequests().map((url) => url.split("?")[0]);
    expect(paths).toEqual(["/boot/ipxe", "/boot/assets/talos-v1.9.5/vmlinuz", "/boot/assets/talos-v1.9.5/initrd.gz", `/boot/callback/${hostId}`]);
    expect(bootRequests()[3]).toMatch(/\?token=\[redacted\]&mac=52:54:00:d5:b0:01&outcome=succeeded/);
    const serial = await server.serialLog();
    expect(serial).toContain(`dv.callback=http://10.0.2.2:${port}/boot/callback/${hostId}?token=`);
    const token = /dv\.callback=\S+\?token=([A-Za-z0-9_-]{43})/.exec(serial)![1]!;
    expect(logLines.join("").includes(token)).toBe(false);
    await waitUntil("the installer to power the VM off", async () => (await server!.ipmitool("chassis", "power", "status")).includes("off"), 60_000, context);

    // Even if the BMC netboots it again (a boot override the platform did not clear), the service says exit.
    await server.ipmitool("chassis", "bootdev", "pxe");
    await server.ipmitool("chassis", "power", "on");
    await waitUntil("SeaBIOS to go on to the (blank) disk after iPXE's exit", async () => /Booting from Hard Disk|No bootable device|Boot failed/.test(await server!.seabiosLog()), 120_000, context);
    expect(bootRequests().filter((url) => url.startsWith("/boot/ipxe"))).toHaveLength(2);
    expect(bootRequests()).toHaveLength(5); // no kernel, no initrd the second time
    expect(logLines.some((line) => line.includes("answering exit") && line.includes(hostId))).toBe(true);
    expect(await events()).toEqual(["HostProvisioningStarted", "HostNetbootRequested", "HostNetbootFetched", "HostInstallReported"]);
    await server.ipmitool("chassis", "power", "off");
  }, 400_000);
});
