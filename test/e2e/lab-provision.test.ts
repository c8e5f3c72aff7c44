import { createReadStream } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMiniBootServer, type MiniBootServer } from "../support/lab/http-log.ts";
import { ensureInstallerPayload, type InstallerPayload } from "../support/lab/payload.ts";
import { assertLabInstalled, startLabServer, waitUntil, type LabServer } from "../support/lab/server-vm.ts";

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
