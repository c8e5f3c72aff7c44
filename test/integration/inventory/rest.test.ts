import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deriveKey, PostgresSecretStore } from "../../../adapters/secrets/index.ts";
import { loadDatacenter } from "../../../commands/inventory/index.ts";
import { bmcEndpointOf } from "../../../adapters/secrets/bmc.ts";
import { inventoryProjection, ProjectionRunner, tasksProjection, tenancyProjection } from "../../../projections/index.ts";
import { buildServer } from "../../../api/server.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";
import { actorHeader, actors, testAuth } from "../api/support/test-auth.ts";
import type { TestActor } from "../api/support/harness.ts";
import type { FastifyInstance, InjectOptions } from "fastify";

let db: ProjectionHarness;
let runner: ProjectionRunner;
let app: FastifyInstance;
let secrets: PostgresSecretStore;
const admin = actors.platformAdmin();

beforeAll(async () => {
  db = await createHarness();
  runner = new ProjectionRunner({ pool: db.pool, store: db.store, projections: [tenancyProjection, tasksProjection, inventoryProjection], pollIntervalMs: 200 });
  await runner.start();
  secrets = new PostgresSecretStore(db.pool, deriveKey(randomBytes(32)));
  app = await buildServer({
    pool: db.pool, store: db.store, runner, auth: testAuth, secrets,
    rateLimit: { max: 100_000, timeWindow: 60_000 }, readYourWrites: { writeWaitMs: 20_000, readWaitMs: 20_000 },
  });
});
afterAll(async () => {
  await app.close();
  await runner.stop();
  await db.dispose();
});

const call = (actor: TestActor | null, options: InjectOptions) => app.inject({ ...options, headers: { ...actorHeader(actor), ...(options.headers ?? {}) } });

const PASSWORD = "Sup3r-S3cret-BMC-pw";
const document = (overrides: { serial?: string; mac?: string; address?: string } = {}) => ({
  datacenters: [
    {
      name: "osl1",
      racks: [
        {
          name: "r01",
          hosts: [
            {
              name: "node-01",
              serial: overrides.serial ?? "SN123",
              macs: [overrides.mac ?? "52:54:00:12:34:01"],
              bmc: { driver: "ipmi", address: overrides.address ?? "127.0.0.1", port: 9623, username: "admin", password: PASSWORD },
            },
            { name: "node-02", serial: "SN124", macs: ["52-54-00-12-34-02"], role: "hypervisor", capacity: { vcpus: 8, memoryMiB: 16384, diskGiB: 200 } },
          ],
        },
      ],
      switches: [{ name: "tor-1", rack: "r01", position: 42 }],
      links: [{ a: { device: "node-01", port: "eth0" }, b: { device: "tor-1", port: "1" } }],
    },
  ],
});

const importDoc = (doc: unknown, dryRun = false, actor: TestActor = admin) =>
  call(actor, { method: "POST", url: "/v1/inventory/import", payload: { document: doc, dryRun } });

async function allEvents(): Promise<Array<{ type: string; data: unknown; stream_id: string }>> {
  const { rows } = await db.pool.query("select event_type as type, data, metadata, stream_id from eventstore.events order by global_position");
  return rows;
}

describe("inventory import over REST", () => {
  it("a dry run reports the difference and writes nothing", async () => {
    const response = await importDoc(document(), true);
    expect(response.statusCode, response.body).toBe(200);
    const report = response.json();
    expect(report.summary).toEqual({ created: 6, updated: 0, unchanged: 0, "pending-approval": 0 });
    expect(await allEvents()).toHaveLength(0);
    expect((await db.pool.query("select count(*)::int as n from secrets.secrets")).rows[0].n).toBe(0);
  });

  it("imports; the same file again appends nothing and stores no new secret", async () => {
    const first = await importDoc(document());
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json().items.map((i: { outcome: string }) => i.outcome)).toEqual(Array(6).fill("created"));
    const events = await allEvents();
    const secretsBefore = (await db.pool.query("select count(*)::int as n from secrets.secrets")).rows[0].n;
    expect(secretsBefore).toBe(1);

    const again = await importDoc(document());
    expect(again.statusCode).toBe(200);
    expect(again.json().summary).toEqual({ created: 0, updated: 0, unchanged: 6, "pending-approval": 0 });
    expect(again.json().position).toBeNull();
    expect(await allEvents()).toHaveLength(events.length);
    expect((await db.pool.query("select count(*)::int as n from secrets.secrets")).rows[0].n).toBe(secretsBefore);

    const hosts = await call(admin, { method: "GET", url: `/v1/hosts?datacenter=osl1&minPosition=${first.json().position}` });
    const list = hosts.json().items;
    expect(list.map((h: { name: string }) => h.name).sort()).toEqual(["node-01", "node-02"]);
    const node2 = list.find((h: { name: string }) => h.name === "node-02");
    expect(node2).toMatchObject({ macs: ["52:54:00:12:34:02"], role: "hypervisor", bmc: null });
    const node1 = list.find((h: { name: string }) => h.name === "node-01");
    expect(node1.bmc).toEqual({ driver: "ipmi", address: "127.0.0.1", port: 9623, username: "admin", hasCredential: true });
    const dc = await call(admin, { method: "GET", url: "/v1/datacenters/osl1" });
    expect(dc.json()).toMatchObject({ name: "osl1", racks: [{ name: "r01", hosts: 2 }], switches: [{ name: "tor-1" }], links: [{ a: { device: "node-01", port: "eth0" } }] });
    expect((await call(admin, { method: "GET", url: "/v1/datacenters" })).json().items.map((d: { name: string }) => d.name)).toEqual(["osl1"]);
  });

  it("the password is in no event, no response; a worker reveals it through the secret store", async () => {
    const everything = JSON.stringify(await allEvents());
    expect(everything).not.toContain(PASSWORD);
    expect(everything).toContain("secret:");
    const report = await importDoc(document(), true);
    expect(report.body).not.toContain(PASSWORD);
    const hosts = await call(admin, { method: "GET", url: "/v1/hosts" });
    expect(hosts.body).not.toContain(PASSWORD);
    expect(hosts.body).not.toContain("secret:");
    const state = await loadDatacenter(db.store, "osl1");
    if (state.status !== "present") throw new Error("no osl1");
    const host = [...state.hosts.values()].find((h) => h.name === "node-01")!;
    expect((await bmcEndpointOf(host, secrets)).password).toBe(PASSWORD);
  });

  it("an identity change of a registered host waits for approval; approval applies it and releases the old MAC", async () => {
    const changed = await importDoc(document({ serial: "SN999", mac: "52:54:00:12:34:99" }));
    expect(changed.statusCode, changed.body).toBe(200);
    const item = changed.json().items.find((i: { name: string }) => i.name === "node-01");
    expect(item).toMatchObject({ outcome: "pending-approval", pendingChange: { fields: ["serial", "macs"] } });
    const pos = changed.json().position;
    const host = (await call(admin, { method: "GET", url: `/v1/hosts?name=node-01&minPosition=${pos}` })).json().items[0];
    expect(host.serial).toBe("SN123"); // not in effect
    expect(host.pendingIdentityChange.proposed).toEqual({ serial: "SN999", macs: ["52:54:00:12:34:99"], bmcAddress: "127.0.0.1" });

    // Importing the same changed file again: nothing new.
    const count = (await allEvents()).length;
    const again = await importDoc(document({ serial: "SN999", mac: "52:54:00:12:34:99" }));
    expect(again.json().items.find((i: { name: string }) => i.name === "node-01").outcome).toBe("pending-approval");
    expect(await allEvents()).toHaveLength(count);

    // Others cannot approve; a stale change id is refused.
    expect((await call(actors.tenantAdmin("t-1"), { method: "POST", url: `/v1/hosts/${host.id}/approve-identity`, payload: {} })).statusCode).toBe(404);
    expect((await call(admin, { method: "POST", url: `/v1/hosts/${host.id}/approve-identity`, payload: { changeId: "stale" } })).statusCode).toBe(409);
    const approved = await call(admin, { method: "POST", url: `/v1/hosts/${host.id}/approve-identity`, payload: { changeId: host.pendingIdentityChange.changeId } });
    expect(approved.statusCode, approved.body).toBe(200);
    expect(approved.json()).toMatchObject({ serial: "SN999", macs: ["52:54:00:12:34:99"], pendingIdentityChange: null });
    // The old MAC is free again platform-wide: another datacenter's host may take it.
    const other = await importDoc({ datacenters: [{ name: "bgo1", racks: [{ name: "r01", hosts: [{ name: "node-01", serial: "B1", macs: ["52:54:00:12:34:01"] }] }] }] });
    expect(other.statusCode, other.body).toBe(200);
  });

  it("a MAC held in another datacenter is refused with its path, and nothing is written", async () => {
    const count = (await allEvents()).length;
    const response = await importDoc({ datacenters: [{ name: "trd1", racks: [{ name: "r01", hosts: [{ name: "n1", serial: "T1", macs: ["52:54:00:12:34:02"] }] }] }] });
    expect(response.statusCode).toBe(422);
    expect(response.json().errors).toEqual([expect.objectContaining({ path: "document.datacenters[0].racks[0].hosts[0].macs" })]);
    expect(await allEvents()).toHaveLength(count);
  });

  it("an invalid file: every error with its path (problem+json 422)", async () => {
    const response = await importDoc({
      datacenters: [
        { name: "Bad DC", racks: [{ name: "r01", hosts: [{ name: "n1", macs: ["nope"], bmc: { driver: "smoke", address: "1.2.3.4", username: "u", password: "p", passwordFile: "f" }, color: "red" }] }] },
      ],
    });
    expect(response.statusCode).toBe(422);
    expect(response.headers["content-type"]).toContain("application/problem+json");
    const paths = response.json().errors.map((e: { path: string }) => e.path).sort();
    expect(paths).toEqual([
      "document.datacenters[0].name",
      "document.datacenters[0].racks[0].hosts[0].bmc",
      "document.datacenters[0].racks[0].hosts[0].bmc.driver",
      "document.datacenters[0].racks[0].hosts[0].color",
      "document.datacenters[0].racks[0].hosts[0].macs[0]",
      "document.datacenters[0].racks[0].hosts[0].serial",
    ]);
    expect(response.body).not.toContain('"p"');
    const semantic = await importDoc({ datacenters: [{ name: "osl2", racks: [{ name: "r1", hosts: [{ name: "a", serial: "S", macs: ["52:54:00:aa:00:01"] }, { name: "a", serial: "S", macs: ["52:54:00:AA:00:01"] }] }] }] });
    expect(semantic.json().errors.map((e: { path: string }) => e.path)).toEqual([
      "document.datacenters[0].racks[0].hosts[1].name",
      "document.datacenters[0].racks[0].hosts[1].serial",
      "document.datacenters[0].racks[0].hosts[1].macs[0]",
    ]);
    const passwordFile = await importDoc({ datacenters: [{ name: "osl2", racks: [{ name: "r1", hosts: [{ name: "a", serial: "S", macs: ["52:54:00:aa:00:01"], bmc: { driver: "ipmi", address: "h", username: "u", passwordFile: "pw.txt" } }] }] }] });
    expect(passwordFile.json().errors[0].path).toBe("document.datacenters[0].racks[0].hosts[0].bmc.passwordFile");
  });

  it("authorization: only platform-admins import and approve; only platform readers see anything", async () => {
    const tenantAdmin = actors.tenantAdmin("t-1");
    const auditor: TestActor = { kind: "user", id: "aud", roles: [{ role: "auditor" }] };
    expect((await importDoc(document(), true, tenantAdmin)).statusCode).toBe(403);
    expect((await importDoc(document(), true, auditor)).statusCode).toBe(403);
    expect((await call(null, { method: "POST", url: "/v1/inventory/import", payload: { document: {} } })).statusCode).toBe(401);
    expect((await call(tenantAdmin, { method: "GET", url: "/v1/hosts" })).statusCode).toBe(403);
    expect((await call(tenantAdmin, { method: "GET", url: "/v1/datacenters" })).statusCode).toBe(403);
    expect((await call(tenantAdmin, { method: "GET", url: "/v1/datacenters/osl1" })).statusCode).toBe(404);
    const hostId = (await call(admin, { method: "GET", url: "/v1/hosts?name=node-02" })).json().items[0].id;
    expect((await call(tenantAdmin, { method: "GET", url: `/v1/hosts/${hostId}` })).statusCode).toBe(404);
    expect((await call(auditor, { method: "GET", url: `/v1/hosts/${hostId}` })).statusCode).toBe(200);
    expect((await call(auditor, { method: "POST", url: `/v1/hosts/${hostId}/approve-identity`, payload: {} })).statusCode).toBe(403);
    expect((await call(null, { method: "GET", url: "/v1/schemas/inventory.json" })).statusCode).toBe(401);
    const schema = await call(tenantAdmin, { method: "GET", url: "/v1/schemas/inventory.json" });
    expect(schema.statusCode).toBe(200);
    expect(schema.json().$id).toBe("https://dataverket.dev/schemas/inventory.json");
  });
});
