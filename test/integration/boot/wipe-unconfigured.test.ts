import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageCatalogFromEnv } from "../../../adapters/boot/catalog.ts";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import { createApiHarness, type ApiHarness } from "../api/support/harness.ts";
import { actors } from "../api/support/test-auth.ts";

/**
 * A boot service without a wipe image (no DV_WIPE_*): a host whose release
 * asked for a wipe gets `exit` (never the installer), nothing is recorded,
 * and the operator finds a warning naming the missing configuration.
 */
const MAC = "52:54:00:12:35:01";
const saga = { actor: { kind: "service" as const, id: "saga/maskin" }, correlationId: "test", scope: { tenantId: PLATFORM_TENANT } };
let api: ApiHarness;
let assets: string;
const logLines: string[] = [];

beforeAll(async () => {
  assets = await mkdtemp(join(tmpdir(), "dv-boot-nowipe-"));
  await mkdir(join(assets, "talos-v1.9.5"));
  await writeFile(join(assets, "talos-v1.9.5", "vmlinuz"), "kernel");
  await writeFile(join(assets, "talos-v1.9.5", "initramfs.xz"), "initramfs");
  const catalog = await imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: assets });
  api = await createApiHarness({
    logger: { level: "info", stream: { write: (line: string) => void logLines.push(line) } },
    boot: { catalog: catalog!, wipe: null, baseUrl: "http://boot.test:8080" },
  });
});

afterAll(async () => {
  await api?.dispose();
  await rm(assets, { recursive: true, force: true });
});

describe("boot service without a wipe image", () => {
  it("a host waiting for its wipe gets exit, nothing is recorded, and a warning names DV_WIPE_ASSETS_DIR", async () => {
    const imported = await api.call(actors.platformAdmin(), {
      method: "POST",
      url: "/v1/inventory/import",
      payload: { document: { datacenters: [{ name: "osl1", racks: [{ name: "r01", hosts: [{ name: "node-01", serial: "SN1", macs: [MAC] }] }] }] } },
    });
    expect(imported.statusCode, imported.body).toBe(200);
    const hostId = imported.json().items.find((i: { kind: string }) => i.kind === "host").id as string;
    await executeHostCommand(api.db.store, { type: "RequestWipe", hostId, datacenter: "osl1", taskId: "release-1", at: new Date().toISOString() }, saga);
    const count = async () => (await api.db.pool.query("select count(*)::int as n from eventstore.events where stream_id = $1", [`maskin-host-${hostId}`])).rows[0].n as number;
    const before = await count();

    const response = await api.app.inject({ method: "GET", url: `/boot/ipxe?mac=${MAC}` });
    expect(response.statusCode).toBe(200);
    expect(response.body).toBe("#!ipxe\nexit\n");
    expect(await count()).toBe(before);
    expect(logLines.join("")).toMatch(/no wipe image is configured \(DV_WIPE_ASSETS_DIR/);
  });
});
