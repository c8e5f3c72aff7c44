import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { imageCatalogFromEnv, wipeImageFromEnv } from "../../../adapters/boot/catalog.ts";
import { StaticTalosSecrets } from "../../../adapters/boot/talos-secrets.ts";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { TalosConfigSchema } from "../../../domain/maskin/talos-config.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import { createApiHarness, type ApiHarness } from "../api/support/harness.ts";
import { actors } from "../api/support/test-auth.ts";
import { TEST_TALOS_SECRETS } from "./fixtures/talos-secrets.ts";

/**
 * The boot service on a real server (buildServer) and a real Postgres: a host
 * the saga put into provisioning gets its installer script by MAC, its Talos
 * config with the one-time token, and reports back once; everything else,
 * and the same host after its install, gets `exit` (boot the disk).
 */
const BASE = "http://boot.test:8080";
const KERNEL = Buffer.from("stand-in kernel bytes\n".repeat(100));
const INITRAMFS = Buffer.from("stand-in initramfs\n".repeat(50));
const WIPE_INITRD = Buffer.from("stand-in wiper initrd\n".repeat(40));
const MAC1 = "52:54:00:12:34:01";
const MAC2 = "52:54:00:12:34:02";
const MAC3 = "52:54:00:12:34:03";

let api: ApiHarness;
let assets: string;
const logLines: string[] = [];
const admin = actors.platformAdmin();
const saga = { actor: { kind: "service" as const, id: "saga/maskin" }, correlationId: "test", scope: { tenantId: PLATFORM_TENANT } };
const hostIds: Record<string, string> = {};
let tenantId: string;
let projectId: string;
const issuedTokens: string[] = [];

const at = () => new Date().toISOString();

async function events(): Promise<Array<{ type: string; stream_id: string; data: Record<string, unknown>; text: string }>> {
  const { rows } = await api.db.pool.query("select event_type as type, stream_id, data, (data::text || ' ' || metadata::text) as text from eventstore.events order by global_position");
  return rows;
}

async function hostEvents(hostId: string) {
  return (await events()).filter((e) => e.stream_id === `maskin-host-${hostId}`);
}

async function startProvisioning(hostId: string, role: "controlplane" | "worker", taskId: string) {
  await executeHostCommand(api.db.store, { type: "StartProvisioning", hostId, datacenter: "osl1", taskId, tenantId, projectId, environmentId: null, role, at: at() }, saga);
  await executeHostCommand(api.db.store, { type: "RecordNetbootRequested", hostId, taskId, at: at() }, saga);
}

async function ipxe(url: string) {
  const response = await api.app.inject({ method: "GET", url });
  expect(response.statusCode, response.body).toBe(200);
  expect(response.headers["content-type"]).toMatch(/^text\/plain/);
  expect(response.headers["cache-control"]).toBe("no-store");
  return response.body;
}

/** The token in a wipe script (its one callback URL). */
function wipeTokenOf(script: string): string {
  const tokens = [...script.matchAll(/\?token=([A-Za-z0-9_-]+)/g)].map((m) => m[1]!);
  expect(tokens).toHaveLength(1);
  issuedTokens.push(tokens[0]!);
  return tokens[0]!;
}

/** The token in an install script (both URLs carry the same one). */
function tokenOf(script: string): string {
  const tokens = [...script.matchAll(/\?token=([A-Za-z0-9_-]+)/g)].map((m) => m[1]!);
  expect(tokens).toHaveLength(2);
  expect(tokens[0]).toBe(tokens[1]);
  issuedTokens.push(tokens[0]!);
  return tokens[0]!;
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

beforeAll(async () => {
  assets = await mkdtemp(join(tmpdir(), "dv-boot-"));
  await mkdir(join(assets, "talos-v1.9.5"));
  await writeFile(join(assets, "talos-v1.9.5", "vmlinuz"), KERNEL);
  await writeFile(join(assets, "talos-v1.9.5", "initramfs.xz"), INITRAMFS);
  const catalog = await imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: assets, DV_BOOT_KERNEL_ARGS: "console=ttyS0 panic=-1" });
  await mkdir(join(assets, "wipe"));
  await writeFile(join(assets, "wipe", "vmlinuz"), KERNEL);
  await writeFile(join(assets, "wipe", "initrd.gz"), WIPE_INITRD);
  const wipe = await wipeImageFromEnv({ DV_WIPE_ASSETS_DIR: join(assets, "wipe"), DV_WIPE_KERNEL_ARGS: "console=ttyS0 quiet" });
  api = await createApiHarness({
    logger: { level: "info", stream: { write: (line: string) => void logLines.push(line) } },
    boot: {
      catalog: catalog!,
      wipe,
      baseUrl: BASE,
      talos: { secrets: new StaticTalosSecrets(TEST_TALOS_SECRETS), endpoint: "https://{cluster}.{datacenter}.example:6443" },
    },
  });

  const hosts = [MAC1, MAC2, MAC3].map((mac, i) => ({ name: `node-0${i + 1}`, serial: `SN${i + 1}`, macs: [mac] }));
  const imported = await api.call(admin, {
    method: "POST",
    url: "/v1/inventory/import",
    payload: { document: { datacenters: [{ name: "osl1", racks: [{ name: "r01", hosts }] }] } },
  });
  expect(imported.statusCode, imported.body).toBe(200);
  for (const item of imported.json().items) if (item.kind === "host") hostIds[item.name] = item.id;

  const tenant = await api.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "acme" } });
  expect(tenant.statusCode, tenant.body).toBe(201);
  tenantId = tenant.json().id;
  const project = await api.call(admin, { method: "POST", url: `/v1/tenants/${tenantId}/projects`, payload: { name: "web" } });
  expect(project.statusCode, project.body).toBe(201);
  projectId = project.json().id;
});

afterAll(async () => {
  await api?.dispose();
  await rm(assets, { recursive: true, force: true });
});

describe("boot service", () => {
  it("an unknown MAC, a malformed one and a host nobody provisions get exit, and nothing is recorded", async () => {
    const before = (await events()).length;
    expect(await ipxe("/boot/ipxe?mac=52:54:00:99:99:99")).toBe("#!ipxe\nexit\n");
    expect(await ipxe("/boot/ipxe?mac=not-a-mac")).toBe("#!ipxe\nexit\n");
    expect(await ipxe("/boot/ipxe")).toBe("#!ipxe\nexit\n");
    expect(await ipxe(`/boot/ipxe?mac=${MAC2}`)).toBe("#!ipxe\nexit\n");
    expect(await ipxe(`/boot/ipxe/${MAC2}`)).toBe("#!ipxe\nexit\n");
    expect((await events()).length).toBe(before);
  });

  it("a host being provisioned gets kernel, initrd and a command line with its config and callback URLs; the fetch is recorded with the token's digest only", async () => {
    const hostId = hostIds["node-01"]!;
    await startProvisioning(hostId, "worker", "task-1");
    // iPXE's ${net0/mac} is lowercase with colons; any form the inventory accepts is looked up the same.
    const script = await ipxe(`/boot/ipxe?mac=${MAC1.toUpperCase().replaceAll(":", "-")}`);
    const token = tokenOf(script);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const id = encodeURIComponent(hostId);
    expect(script.split("\n")).toEqual([
      "#!ipxe",
      `echo Dataverket: installing talos-v1.9.5 on node-01`,
      `kernel ${BASE}/boot/assets/talos-v1.9.5/vmlinuz console=ttyS0 panic=-1 talos.config=${BASE}/boot/config/${id}?token=${token} dv.callback=${BASE}/boot/callback/${id}?token=${token}`,
      `initrd ${BASE}/boot/assets/talos-v1.9.5/initramfs.xz`,
      "boot",
      "",
    ]);
    const fetched = (await hostEvents(hostId)).filter((e) => e.type === "HostNetbootFetched");
    expect(fetched).toHaveLength(1);
    expect(fetched[0]!.data).toMatchObject({ hostId, mac: MAC1, tokenDigest: sha256(token), taskId: "task-1", datacenter: "osl1" });
  });

  it("serves the catalog's local kernel and initramfs; nothing else", async () => {
    const kernel = await api.app.inject({ method: "GET", url: "/boot/assets/talos-v1.9.5/vmlinuz" });
    expect(kernel.statusCode).toBe(200);
    expect(kernel.rawPayload.equals(KERNEL)).toBe(true);
    expect(kernel.headers["content-length"]).toBe(String(KERNEL.length));
    const initramfs = await api.app.inject({ method: "GET", url: "/boot/assets/talos-v1.9.5/initramfs.xz" });
    expect(initramfs.rawPayload.equals(INITRAMFS)).toBe(true);
    for (const url of ["/boot/assets/talos-v1.9.5/secrets.yaml", "/boot/assets/talos-v1.9.5/..%2F..%2Fetc%2Fpasswd", "/boot/assets/talos-v9.9.9/vmlinuz"]) {
      const missing = await api.app.inject({ method: "GET", url });
      expect(missing.statusCode, url).toBe(404);
      expect(missing.headers["content-type"]).toMatch(/^application\/problem\+json/);
    }
  });

  it("over a real socket too: iPXE's GET of the kernel streams the file with its length (HEAD answers the length alone)", async () => {
    const address = await api.app.listen({ host: "127.0.0.1", port: 0 });
    const kernel = await fetch(`${address}/boot/assets/talos-v1.9.5/vmlinuz`);
    expect(kernel.status).toBe(200);
    expect(kernel.headers.get("content-length")).toBe(String(KERNEL.length));
    expect(Buffer.from(await kernel.arrayBuffer()).equals(KERNEL)).toBe(true);
    const head = await fetch(`${address}/boot/assets/talos-v1.9.5/initramfs.xz`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(INITRAMFS.length));
  });

  it("the Talos config needs the current token: none, a wrong one or another host's is 401; the right one gets the node's YAML", async () => {
    const hostId = hostIds["node-01"]!;
    const token = issuedTokens.at(-1)!;
    for (const url of [`/boot/config/${hostId}`, `/boot/config/${hostId}?token=${"A".repeat(43)}`, `/boot/config/${hostIds["node-02"]}?token=${token}`, `/boot/config/${hostId}?token=short`]) {
      const refused = await api.app.inject({ method: "GET", url });
      expect(refused.statusCode, url).toBe(401);
      expect(refused.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(refused.json().code).toBe("install_token_invalid");
    }
    const response = await api.app.inject({ method: "GET", url: `/boot/config/${hostId}?token=${token}` });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers["content-type"]).toMatch(/^application\/yaml/);
    const config = parse(response.body) as unknown;
    expect(TalosConfigSchema.safeParse(config).error?.issues ?? []).toEqual([]);
    expect(config).toMatchObject({
      version: "v1alpha1",
      machine: { type: "worker", token: TEST_TALOS_SECRETS.trustdinfo.token, network: { hostname: "node-01" }, install: { disk: "/dev/sda", image: "ghcr.io/siderolabs/installer:v1.9.5", wipe: false } },
      cluster: { clusterName: "web", controlPlane: { endpoint: "https://web.osl1.example:6443" }, token: TEST_TALOS_SECRETS.secrets.bootstraptoken },
    });
    // Fetching the config does not use the token up: Talos may fetch it again before the installer reports.
    expect((await api.app.inject({ method: "GET", url: `/boot/config/${hostId}?token=${token}` })).statusCode).toBe(200);
  });

  it("the callback is accepted once (204) and then 401; the same MAC then gets exit, also once the host is ready", async () => {
    const hostId = hostIds["node-01"]!;
    const token = issuedTokens.at(-1)!;
    const wrong = await api.app.inject({ method: "POST", url: `/boot/callback/${hostId}?token=${"B".repeat(43)}`, payload: { outcome: "succeeded" } });
    expect(wrong.statusCode).toBe(401);
    const invalid = await api.app.inject({ method: "POST", url: `/boot/callback/${hostId}?token=${token}`, payload: { outcome: "done" } });
    expect(invalid.statusCode).toBe(400);

    const first = await api.app.inject({ method: "POST", url: `/boot/callback/${hostId}?token=${token}`, payload: { outcome: "succeeded", message: "installed to /dev/sda", mac: MAC1 } });
    expect(first.statusCode, first.body).toBe(204);
    const second = await api.app.inject({ method: "POST", url: `/boot/callback/${hostId}?token=${token}`, payload: { outcome: "succeeded" } });
    expect(second.statusCode).toBe(401);
    expect(second.json().code).toBe("install_token_invalid");
    const reported = (await hostEvents(hostId)).filter((e) => e.type === "HostInstallReported");
    expect(reported).toHaveLength(1);
    expect(reported[0]!.data).toMatchObject({ hostId, outcome: "succeeded", taskId: "task-1" });
    expect(reported[0]!.data.message).toContain("installed to /dev/sda");

    // The installer's token is spent: no config any more either.
    expect((await api.app.inject({ method: "GET", url: `/boot/config/${hostId}?token=${token}` })).statusCode).toBe(401);
    // The machine reboots and iPXE asks again: boot the disk, record nothing.
    const before = (await hostEvents(hostId)).length;
    expect(await ipxe(`/boot/ipxe?mac=${MAC1}`)).toBe("#!ipxe\nexit\n");
    await executeHostCommand(api.db.store, { type: "CompleteProvisioning", hostId, taskId: "task-1", at: at() }, saga);
    expect(await ipxe(`/boot/ipxe/${MAC1}`)).toBe("#!ipxe\nexit\n");
    expect((await hostEvents(hostId)).length).toBe(before + 1); // HostProvisioned only
  });

  it("a busybox installer reports with a plain GET (its wget appends ?mac=... to the URL as given); a second fetch of the script replaces the token", async () => {
    const hostId = hostIds["node-03"]!;
    await startProvisioning(hostId, "controlplane", "task-3");
    const stale = tokenOf(await ipxe(`/boot/ipxe/${MAC3}`));
    const token = tokenOf(await ipxe(`/boot/ipxe?mac=${MAC3}`));
    expect(token).not.toBe(stale);
    expect((await api.app.inject({ method: "GET", url: `/boot/config/${hostId}?token=${stale}` })).statusCode).toBe(401);
    const config = await api.app.inject({ method: "GET", url: `/boot/config/${hostId}?token=${token}` });
    expect(config.statusCode).toBe(200);
    expect(parse(config.body)).toMatchObject({ machine: { type: "controlplane", network: { hostname: "node-03" } }, cluster: { etcd: { ca: TEST_TALOS_SECRETS.certs.etcd } } });

    const naive = await api.app.inject({ method: "GET", url: `/boot/callback/${hostId}?token=${token}?mac=${MAC3}&outcome=failed&message=disk%20not%20found&ip=10.0.2.15` });
    expect(naive.statusCode, naive.body).toBe(204);
    const again = await api.app.inject({ method: "GET", url: `/boot/callback/${hostId}?token=${token}&mac=${MAC3}&outcome=failed` });
    expect(again.statusCode).toBe(401);
    const reported = (await hostEvents(hostId)).filter((e) => e.type === "HostInstallReported");
    expect(reported.map((e) => e.data.outcome)).toEqual(["failed"]);
    expect(reported[0]!.data.message).toContain("disk not found");
    expect(await ipxe(`/boot/ipxe?mac=${MAC3}`)).toBe("#!ipxe\nexit\n");
  });

  it("a form post (wget --post-data) is a callback too", async () => {
    const hostId = hostIds["node-02"]!;
    await startProvisioning(hostId, "worker", "task-2");
    const token = tokenOf(await ipxe(`/boot/ipxe?mac=${MAC2}`));
    const response = await api.app.inject({
      method: "POST",
      url: `/boot/callback/${hostId}?token=${token}`,
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: `outcome=succeeded&mac=${encodeURIComponent(MAC2)}`,
    });
    expect(response.statusCode, response.body).toBe(204);
  });

  it("a released host whose wipe was asked for gets the wipe image with a one-time wipe token; the wiper reports once; then exit", async () => {
    // node-01 is ready (installed above): its release starts; until the wipe is asked for, it boots its disk.
    const hostId = hostIds["node-01"]!;
    const id = encodeURIComponent(hostId);
    await executeHostCommand(api.db.store, { type: "StartRelease", hostId, taskId: "release-1", at: at() }, saga);
    expect(await ipxe(`/boot/ipxe?mac=${MAC1}`)).toBe("#!ipxe\nexit\n");
    await executeHostCommand(api.db.store, { type: "RequestWipe", hostId, datacenter: "osl1", taskId: "release-1", at: at() }, saga);

    const script = await ipxe(`/boot/ipxe?mac=${MAC1}`);
    const token = wipeTokenOf(script);
    expect(script.split("\n")).toEqual([
      "#!ipxe",
      "echo Dataverket: wiping the disks of node-01",
      `kernel ${BASE}/boot/assets/dv-wipe/vmlinuz console=ttyS0 quiet dv.wipe.callback=${BASE}/boot/wipe-callback/${id}?token=${token}`,
      `initrd ${BASE}/boot/assets/dv-wipe/initrd.gz`,
      "boot",
      "",
    ]);
    const fetched = (await hostEvents(hostId)).filter((e) => e.type === "HostWipeNetbootFetched");
    expect(fetched).toHaveLength(1);
    expect(fetched[0]!.data).toMatchObject({ hostId, mac: MAC1, tokenDigest: sha256(token), taskId: "release-1", datacenter: "osl1" });
    const initrd = await api.app.inject({ method: "GET", url: "/boot/assets/dv-wipe/initrd.gz" });
    expect(initrd.statusCode).toBe(200);
    expect(initrd.rawPayload.equals(WIPE_INITRD)).toBe(true);
    expect((await api.app.inject({ method: "GET", url: "/boot/assets/dv-wipe/secrets.yaml" })).statusCode).toBe(404);

    // A wipe token is no install token (config, install callback) and a wrong token is no wipe token.
    expect((await api.app.inject({ method: "GET", url: `/boot/config/${hostId}?token=${token}` })).statusCode).toBe(401);
    expect((await api.app.inject({ method: "GET", url: `/boot/callback/${hostId}?token=${token}&outcome=succeeded` })).statusCode).toBe(401);
    const wrong = await api.app.inject({ method: "GET", url: `/boot/wipe-callback/${hostId}?token=${"C".repeat(43)}&outcome=succeeded` });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().code).toBe("wipe_token_invalid");
    expect((await api.app.inject({ method: "GET", url: `/boot/wipe-callback/${hostId}?outcome=succeeded` })).statusCode).toBe(401);
    expect((await api.app.inject({ method: "GET", url: `/boot/wipe-callback/${hostId}?token=${token}&outcome=maybe` })).statusCode).toBe(400);
    expect((await api.app.inject({ method: "GET", url: `/boot/wipe-callback/${hostIds["node-02"]}?token=${token}&outcome=succeeded` })).statusCode).toBe(401);

    // The busybox wiper: a plain GET, its report in the query.
    const report = await api.app.inject({ method: "GET", url: `/boot/wipe-callback/${id}?token=${token}&mac=${MAC1}&outcome=succeeded&devices=/dev/vda,/dev/vdb&bytes=67108864&message=` });
    expect(report.statusCode, report.body).toBe(204);
    const again = await api.app.inject({ method: "GET", url: `/boot/wipe-callback/${id}?token=${token}&outcome=succeeded` });
    expect(again.statusCode).toBe(401);
    expect(again.json().code).toBe("wipe_token_invalid");
    const reported = (await hostEvents(hostId)).filter((e) => e.type === "HostWipeReported");
    expect(reported).toHaveLength(1);
    expect(reported[0]!.data).toMatchObject({ hostId, taskId: "release-1", outcome: "succeeded", devices: ["/dev/vda", "/dev/vdb"], bytesWiped: 67108864 });
    expect(reported[0]!.data.message).toContain(`reported by ${MAC1}`);
    // Wiped: the next netboot boots the disk and records nothing.
    const before = (await hostEvents(hostId)).length;
    expect(await ipxe(`/boot/ipxe?mac=${MAC1}`)).toBe("#!ipxe\nexit\n");
    expect((await hostEvents(hostId)).length).toBe(before);
  });

  it("a second wipe netboot replaces the wipe token; a wiper's failure is recorded with its words (JSON post)", async () => {
    // node-03's install failed above: its task marks it provision_failed, release-3 releases it.
    const hostId = hostIds["node-03"]!;
    await executeHostCommand(api.db.store, { type: "FailProvisioning", hostId, taskId: "task-3", reason: "install failed", at: at() }, saga);
    await executeHostCommand(api.db.store, { type: "StartRelease", hostId, taskId: "release-3", at: at() }, saga);
    await executeHostCommand(api.db.store, { type: "RequestWipe", hostId, datacenter: "osl1", taskId: "release-3", at: at() }, saga);
    const stale = wipeTokenOf(await ipxe(`/boot/ipxe/${MAC3}`));
    const token = wipeTokenOf(await ipxe(`/boot/ipxe/${MAC3}`));
    expect(token).not.toBe(stale);
    expect((await api.app.inject({ method: "POST", url: `/boot/wipe-callback/${hostId}?token=${stale}`, payload: { outcome: "succeeded" } })).statusCode).toBe(401);
    const failed = await api.app.inject({ method: "POST", url: `/boot/wipe-callback/${hostId}?token=${token}`, payload: { outcome: "failed", message: "dd: /dev/sda: I/O error", devices: ["/dev/sda"], bytes: 0 } });
    expect(failed.statusCode, failed.body).toBe(204);
    const reported = (await hostEvents(hostId)).filter((e) => e.type === "HostWipeReported");
    expect(reported.map((e) => e.data)).toEqual([expect.objectContaining({ outcome: "failed", message: "dd: /dev/sda: I/O error", devices: ["/dev/sda"], bytesWiped: 0, taskId: "release-3" })]);
  });

  it("no token ever appears in an event or a log line; only digests are recorded", async () => {
    expect(issuedTokens.length).toBeGreaterThanOrEqual(4);
    const all = await events();
    const digests = all.filter((e) => e.type === "HostNetbootFetched" || e.type === "HostWipeNetbootFetched").map((e) => e.data.tokenDigest);
    expect(digests.sort()).toEqual(issuedTokens.map(sha256).sort());
    const logs = logLines.join("");
    // The boot routes' requests were logged (with the token redacted), so the check below is not vacuous.
    expect(logs).toContain("/boot/callback/");
    expect(logs).toContain("/boot/wipe-callback/");
    expect(logs).toContain("token=[redacted]");
    for (const token of issuedTokens) {
      for (const event of all) expect(event.text.includes(token), `${event.type} contains an install token`).toBe(false);
      expect(logs.includes(token), "a log line contains an install token").toBe(false);
    }
    // Nor does an unknown path under /boot/ log its token.
    await api.app.inject({ method: "GET", url: `/boot/callback/?token=${issuedTokens[0]}` });
    expect(logLines.join("").includes(issuedTokens[0]!)).toBe(false);
  });
});
