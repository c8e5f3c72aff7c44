import type { FastifyInstance, InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { v7 as uuidv7 } from "uuid";
import { buildServer } from "../../../api/server.ts";
import { graphqlModule } from "../../../api/graphql/index.ts";
import { executeCapacityCommand, executeDiskImageCommand, executeVmCommand } from "../../../commands/maskin/vm/index.ts";
import { inventoryProjection, maskinImagesProjection, maskinVmsProjection, ProjectionRunner, tasksProjection, tenancyProjection } from "../../../projections/index.ts";
import { createHarness, until, type ProjectionHarness } from "../projections/support.ts";
import { actorHeader, actors, testAuth } from "../api/support/test-auth.ts";
import type { TestActor } from "../api/support/harness.ts";

/**
 * The VM infrastructure REST API over the real log and read models:
 * hypervisors from the inventory import, cordon/drain, immutable image
 * versions, disk images with their references (tenant visibility,
 * terminating, why-not-deleted), and project quota usage from the VMs.
 */

let db: ProjectionHarness;
let runner: ProjectionRunner;
let app: FastifyInstance;
const admin = actors.platformAdmin();
const context = { actor: { kind: "user", id: "test" }, correlationId: "c" } as const;
const at = () => new Date().toISOString();

beforeAll(async () => {
  db = await createHarness();
  runner = new ProjectionRunner({ pool: db.pool, store: db.store, projections: [tenancyProjection, tasksProjection, inventoryProjection, maskinVmsProjection, maskinImagesProjection], pollIntervalMs: 100 });
  await runner.start();
  app = await buildServer({ pool: db.pool, store: db.store, runner, auth: testAuth, rateLimit: { max: 100_000, timeWindow: 60_000 }, readYourWrites: { writeWaitMs: 20_000, readWaitMs: 20_000 }, graphql: graphqlModule({ pool: db.pool, db: db.db, store: db.store, runner }) });
});
afterAll(async () => {
  await app.close();
  await runner.stop();
  await db.dispose();
});

const call = (actor: TestActor | null, options: InjectOptions) => app.inject({ ...options, headers: { ...actorHeader(actor), ...(options.headers ?? {}) } });
const body = (response: { body: string }) => JSON.parse(response.body);

/** Polls a GET until `ok` holds for its body (the read models follow the log). */
async function eventually(actor: TestActor, url: string, ok: (b: any, status: number) => boolean): Promise<any> {
  let last: any;
  await until(async () => {
    const response = await call(actor, { method: "GET", url });
    last = response.statusCode === 200 ? body(response) : { status: response.statusCode };
    return ok(last, response.statusCode);
  });
  return last;
}

async function createProject(): Promise<{ tenantId: string; projectId: string }> {
  const tenant = await call(admin, { method: "POST", url: "/v1/tenants", payload: { name: `t-${uuidv7().slice(-8)}` } });
  expect(tenant.statusCode, tenant.body).toBe(201);
  const tenantId = body(tenant).id as string;
  const project = await call(admin, { method: "POST", url: `/v1/tenants/${tenantId}/projects`, payload: { name: "web" } });
  expect(project.statusCode, project.body).toBe(201);
  return { tenantId, projectId: body(project).id as string };
}

async function createVm(scope: { tenantId: string; projectId: string }, disk: { name: string; mode: "CreateIfNotExist" | "FailIfNotExist" }, resources = { vcpus: 2, memoryMiB: 1024, diskGiB: 10 }) {
  const vmId = uuidv7();
  const template = { image: { name: "debian", version: "12" }, sizeGiB: 10, storageClass: "local" };
  await executeVmCommand(
    db.store,
    {
      type: "CreateVm", vmId, name: `vm-${vmId.slice(-6)}`, ...scope, environmentId: null, datacenter: "rdc", resources, image: null,
      disk: { ...disk, template: disk.mode === "CreateIfNotExist" ? template : null }, nics: [{}],
      quota: { limits: {}, usage: { vms: 0, vcpus: 0, memoryMiB: 0 } }, taskId: uuidv7(), at: at(),
    },
    context,
  );
  await executeDiskImageCommand(db.store, { type: "ReferenceDiskImage", datacenter: "rdc", name: disk.name, vmId, mode: disk.mode, template: disk.mode === "CreateIfNotExist" ? template : null, taskId: uuidv7(), at: at() }, context);
  return vmId;
}

describe("hypervisors", () => {
  let hostId: string;

  it("an imported hypervisor is listed with capacity, allocatable, used and free; others may not see it", async () => {
    const document = {
      datacenters: [{ name: "rdc", overcommit: { cpu: 2 }, racks: [{ name: "r1", hosts: [{ name: "hv-a", serial: "RS-1", macs: ["52:54:00:bb:00:01"], role: "hypervisor", capacity: { vcpus: 4, memoryMiB: 8192, diskGiB: 50 } }] }] }],
    };
    const imported = await call(admin, { method: "POST", url: "/v1/inventory/import", payload: { document } });
    expect(imported.statusCode, imported.body).toBe(200);
    hostId = body(imported).items.find((i: { name: string }) => i.name === "hv-a").id;

    const page = await eventually(admin, "/v1/hypervisors?datacenter=rdc", (b) => b.items?.length === 1);
    expect(page.items[0]).toMatchObject({
      hostId, name: "hv-a", datacenter: "rdc",
      capacity: { vcpus: 4, memoryMiB: 8192, diskGiB: 50 }, overcommit: { cpu: 2, memory: 1, disk: 1 },
      allocatable: { vcpus: 8, memoryMiB: 8192, diskGiB: 50 }, used: { vcpus: 0, memoryMiB: 0, diskGiB: 0 }, free: { vcpus: 8, memoryMiB: 8192, diskGiB: 50 },
      cordoned: false, orphans: [],
    });
    expect(body(await call(admin, { method: "GET", url: "/v1/hypervisors?datacenter=elsewhere" })).items).toEqual([]);
    expect((await call(actors.auditor(), { method: "GET", url: `/v1/hypervisors/${hostId}` })).statusCode).toBe(200);
    const tenant = await call(actors.tenantAdmin("some-tenant"), { method: "GET", url: `/v1/hypervisors/${hostId}` });
    expect(tenant.statusCode).toBe(404);
    expect(body(tenant).code).toBe("hypervisor_not_found");
    expect((await call(actors.auditor(), { method: "POST", url: `/v1/hypervisors/${hostId}/cordon`, payload: { reason: "x" } })).statusCode).toBe(403);
  });

  it("cordon, uncordon and drain answer synchronously; drain reports the VMs that must move", async () => {
    const cordoned = await call(admin, { method: "POST", url: `/v1/hypervisors/${hostId}/cordon`, payload: { reason: "firmware" } });
    expect(cordoned.statusCode, cordoned.body).toBe(200);
    expect(body(cordoned)).toMatchObject({ cordoned: true, cordonReason: "firmware" });
    const again = await call(admin, { method: "POST", url: `/v1/hypervisors/${hostId}/cordon`, payload: { reason: "other" } });
    expect(body(again)).toMatchObject({ cordoned: true, cordonReason: "firmware" });
    const uncordoned = await call(admin, { method: "POST", url: `/v1/hypervisors/${hostId}/uncordon`, payload: {} });
    expect(body(uncordoned)).toMatchObject({ cordoned: false, cordonReason: null });

    await executeCapacityCommand(db.store, { type: "ReserveCapacity", hostId, vmId: "vm-b", resources: { vcpus: 2, memoryMiB: 1024, diskGiB: 5 }, groups: ["web"], taskId: "t1", at: at() }, context);
    await executeCapacityCommand(db.store, { type: "ReserveCapacity", hostId, vmId: "vm-a", resources: { vcpus: 1, memoryMiB: 512, diskGiB: 5 }, taskId: "t2", at: at() }, context);
    const drain = await call(admin, { method: "POST", url: `/v1/hypervisors/${hostId}/drain`, payload: { reason: "decommission" } });
    expect(drain.statusCode, drain.body).toBe(200);
    expect(body(drain)).toMatchObject({
      hostId, cordoned: true,
      vms: [{ vmId: "vm-a", resources: { vcpus: 1, memoryMiB: 512, diskGiB: 5 }, groups: [] }, { vmId: "vm-b", resources: { vcpus: 2, memoryMiB: 1024, diskGiB: 5 }, groups: ["web"] }],
      used: { vcpus: 3, memoryMiB: 1536, diskGiB: 10 },
    });
    const shown = await eventually(admin, `/v1/hypervisors/${hostId}`, (b) => b.drainTaskId === body(drain).drainId);
    expect(shown).toMatchObject({ cordoned: true, vmCount: 2, free: { vcpus: 5, memoryMiB: 6656, diskGiB: 40 } });
    expect((await call(admin, { method: "POST", url: "/v1/hypervisors/nope/drain", payload: { reason: "x" } })).statusCode).toBe(404);
  });
});

describe("images", () => {
  const digest = "b".repeat(64);
  const version = { name: "debian", version: "12", digest, format: "qcow2", source: { kind: "file", path: "/srv/images/debian-12.qcow2" }, osFamily: "debian", guestInit: "cloud-init" };

  it("registers a version (201), the same again is a no-op (200), other content is 409 image_version_immutable", async () => {
    const first = await call(admin, { method: "POST", url: "/v1/images", payload: version });
    expect(first.statusCode, first.body).toBe(201);
    expect(body(first)).toMatchObject({ name: "debian", created: true, version: { version: "12", digest, format: "qcow2", source: { kind: "file", path: "/srv/images/debian-12.qcow2" } } });
    const same = await call(admin, { method: "POST", url: "/v1/images", payload: version });
    expect(same.statusCode).toBe(200);
    expect(body(same).created).toBe(false);
    const changed = await call(admin, { method: "POST", url: "/v1/images", payload: { ...version, digest: "c".repeat(64) } });
    expect(changed.statusCode).toBe(409);
    expect(changed.headers["content-type"]).toContain("application/problem+json");
    expect(body(changed)).toMatchObject({ code: "image_version_immutable", details: { fields: ["digest"] } });
    const kernel = await call(admin, {
      method: "POST", url: "/v1/images",
      payload: {
        name: "lab", version: "1", digest: "d".repeat(64), format: "kernel+initrd", source: { kind: "file", path: "/srv/lab" }, osFamily: "linux", guestInit: "none",
        boot: { kernel: { source: { kind: "file", path: "/srv/lab/vmlinuz" }, digest: "e".repeat(64) }, initrd: { source: { kind: "file", path: "/srv/lab/initrd" }, digest: "f".repeat(64) }, cmdline: "console=ttyS0" },
      },
    });
    expect(kernel.statusCode, kernel.body).toBe(201);
    const noBoot = await call(admin, { method: "POST", url: "/v1/images", payload: { ...version, name: "lab2", format: "kernel+initrd" } });
    expect(noBoot.statusCode).toBe(400);
    const badDigest = await call(admin, { method: "POST", url: "/v1/images", payload: { ...version, version: "13", digest: "XYZ" } });
    expect(badDigest.statusCode).toBe(400);
  });

  it("lists images with their versions; sources only for platform readers", async () => {
    await call(admin, { method: "POST", url: "/v1/images", payload: { ...version, version: "12.1", digest: "1".repeat(64) } });
    const image = await eventually(admin, "/v1/images/debian", (b) => b.versions?.length === 2);
    expect(image.versions.map((v: { version: string }) => v.version)).toEqual(["12", "12.1"]);
    const list = await eventually(admin, "/v1/images?limit=1", (b) => b.items?.length === 1);
    expect(list.items[0].name).toBe("debian");
    expect(list.nextCursor).not.toBeNull();
    const next = body(await call(admin, { method: "GET", url: `/v1/images?limit=1&cursor=${list.nextCursor}` }));
    expect(next.items.map((i: { name: string }) => i.name)).toEqual(["lab"]);
    expect(next.items[0].versions[0].boot).toMatchObject({ kernel: { source: { kind: "file", path: "/srv/lab/vmlinuz" } }, cmdline: "console=ttyS0" });
    const tenantView = body(await call(actors.tenantAdmin("any"), { method: "GET", url: "/v1/images/lab" }));
    expect(tenantView.versions[0]).toMatchObject({ source: null, boot: { kernel: { source: null, digest: "e".repeat(64) } } });
    expect((await call(admin, { method: "GET", url: "/v1/images/nope" })).statusCode).toBe(404);
  });
});

describe("disk images and quota usage", () => {
  it("a shared disk image: tenant visibility, delete → terminating, why-not-deleted, deleted with the last reference; usage follows the VMs", async () => {
    const a = await createProject();
    const b = await createProject();
    const vm1 = await createVm(a, { name: "shared", mode: "CreateIfNotExist" });
    const vm2 = await createVm(a, { name: "shared", mode: "FailIfNotExist" }, { vcpus: 1, memoryMiB: 512, diskGiB: 10 });
    await createVm(b, { name: "other", mode: "CreateIfNotExist" });

    const shown = await eventually(admin, "/v1/disk-images/rdc/shared", (d) => d.references === 2);
    expect(shown).toMatchObject({ datacenter: "rdc", name: "shared", status: "active", generation: 1, template: { sizeGiB: 10 } });
    const member = actors.member(a.tenantId, a.projectId);
    expect((await call(member, { method: "GET", url: "/v1/disk-images/rdc/shared" })).statusCode).toBe(200);
    expect(body(await call(member, { method: "GET", url: "/v1/disk-images?datacenter=rdc" })).items.map((d: { name: string }) => d.name)).toEqual(["shared"]);
    const everything = await eventually(admin, "/v1/disk-images?datacenter=rdc", (page) => page.items?.length === 2);
    expect(everything.items.map((d: { name: string }) => d.name)).toEqual(["other", "shared"]);
    const outsider = await call(actors.tenantAdmin(b.tenantId), { method: "GET", url: "/v1/disk-images/rdc/shared" });
    expect(outsider.statusCode).toBe(404);
    expect(body(outsider).code).toBe("disk_image_not_found");
    expect((await call(member, { method: "DELETE", url: "/v1/disk-images/rdc/shared" })).statusCode).toBe(403);

    const usage = await call(actors.tenantAdmin(a.tenantId), { method: "GET", url: `/v1/tenants/${a.tenantId}/projects/${a.projectId}/quota` });
    expect(usage.statusCode, usage.body).toBe(200);
    expect(body(usage).usage).toEqual({ vms: 2, vcpus: 3, memoryMiB: 1536 });
    expect(usage.headers.etag).toBeDefined();

    const deleted = await call(admin, { method: "DELETE", url: "/v1/disk-images/rdc/shared" });
    expect(deleted.statusCode, deleted.body).toBe(202);
    expect(body(deleted)).toEqual({ datacenter: "rdc", name: "shared", status: "terminating", referencedBy: [vm1, vm2].sort() });
    const why = await eventually(admin, "/v1/disk-images/rdc/shared/why-not-deleted", (w) => w.status === "terminating");
    expect(why.references.map((r: { vmId: string }) => r.vmId)).toEqual([vm1, vm2]);
    expect(why.references[0]).toMatchObject({ tenantId: a.tenantId, projectId: a.projectId, mode: "CreateIfNotExist", addedBy: { eventId: expect.any(String), position: expect.any(String) } });
    const { rows } = await db.pool.query("select event_type from eventstore.events where event_id = $1", [why.references[1].addedBy.eventId]);
    expect(rows).toEqual([{ event_type: "DiskImageReferenced" }]);

    for (const vmId of [vm1, vm2]) {
      await executeVmCommand(db.store, { type: "DeleteVm", vmId, taskId: uuidv7(), at: at() }, context);
      await executeDiskImageCommand(db.store, { type: "ReleaseDiskImageReference", datacenter: "rdc", name: "shared", vmId, taskId: uuidv7(), at: at() }, context);
      await executeVmCommand(db.store, { type: "CompleteVmDeletion", vmId, taskId: uuidv7(), at: at() }, context);
    }
    const gone = await eventually(admin, "/v1/disk-images/rdc/shared", (d) => d.status === "deleted");
    expect(gone).toMatchObject({ references: 0, deletedAt: expect.any(String) });
    const after = await eventually(actors.tenantAdmin(a.tenantId), `/v1/tenants/${a.tenantId}/projects/${a.projectId}/quota`, (q) => q.usage?.vms === 0);
    expect(after.usage).toEqual({ vms: 0, vcpus: 0, memoryMiB: 0 });
    // Nothing of tenant A references it any more: its member no longer sees it.
    expect((await call(member, { method: "GET", url: "/v1/disk-images/rdc/shared" })).statusCode).toBe(404);
    const again = await call(admin, { method: "DELETE", url: "/v1/disk-images/rdc/missing" });
    expect(again.statusCode).toBe(404);
  });
});

describe("GraphQL", () => {
  const gql = async (actor: TestActor, query: string, variables: Record<string, unknown> = {}) => {
    const response = await call(actor, { method: "POST", url: "/graphql", payload: { query, variables } });
    const result = body(response);
    expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
    return result.data;
  };

  it("shows hypervisors, images, disk images with their references, VMs with placement and drift, and project quota usage", async () => {
    const a = await createProject();
    const vmId = await createVm(a, { name: "gql-disk", mode: "CreateIfNotExist" }, { vcpus: 3, memoryMiB: 2048, diskGiB: 10 });
    await eventually(admin, "/v1/disk-images/rdc/gql-disk", (d) => d.references === 1);
    const chosen = { hypervisor: "hv-a", hostId: "h-a", score: { spreadMembers: 0, utilization: 0.25 } };
    const rejected = [{ hypervisor: "hv-b", hostId: "h-b", reason: "cordoned", detail: "hypervisor hv-b is cordoned" }];
    await executeVmCommand(db.store, { type: "RecordPlacement", vmId, chosen, rejected, taskId: uuidv7(), at: at() }, context);
    await executeVmCommand(db.store, { type: "RecordRuntimeObservation", vmId, observed: "absent", at: at() }, context);
    const member = actors.member(a.tenantId, a.projectId);

    const platform = await gql(admin, `{ hypervisors(datacenter: "rdc") { nodes { name allocatable { vcpus } free { vcpus } cordoned } } images { name versions { version source } } }`);
    expect(platform.hypervisors.nodes).toEqual([{ name: "hv-a", allocatable: { vcpus: 8 }, free: { vcpus: 5 }, cordoned: true }]);
    expect(platform.images.find((i: { name: string }) => i.name === "debian").versions[0]).toEqual({ version: "12", source: { kind: "file", path: "/srv/images/debian-12.qcow2" } });
    const tenant = await gql(member, `{ hypervisors { nodes { name } } images { name versions { source } } }`);
    expect(tenant.hypervisors.nodes).toEqual([]);
    expect(tenant.images.find((i: { name: string }) => i.name === "debian").versions[0].source).toBeNull();

    const disks = await gql(member, `{ diskImages(datacenter: "rdc") { nodes { name status referencedBy { vmId projectId mode addedByEventId } } } }`);
    expect(disks.diskImages.nodes).toEqual([{ name: "gql-disk", status: "active", referencedBy: [{ vmId, projectId: a.projectId, mode: "CreateIfNotExist", addedByEventId: expect.any(String) }] }]);

    let vm: any;
    await until(async () => {
      vm = await gql(member, `query($id: String!) { vm(id: $id) { vmId lifecycle desired observed hostId placement { outcome chosen rejected } resources { vcpus } } vms { nodes { vmId } } }`, { id: vmId });
      return vm.vm?.observed === "absent";
    });
    expect(vm.vm).toEqual({ vmId, lifecycle: "provisioning", desired: "running", observed: "absent", hostId: "h-a", placement: { outcome: "placed", chosen, rejected }, resources: { vcpus: 3 } });
    expect(vm.vms.nodes).toEqual([{ vmId }]);
    expect((await gql(actors.tenantAdmin("someone-else"), `query($id: String!) { vm(id: $id) { vmId } }`, { id: vmId })).vm).toBeNull();

    const quota = await gql(actors.tenantAdmin(a.tenantId), `query($t: String!, $p: String!) { project(tenantId: $t, projectId: $p) { quota { usage { vms vcpus memoryMiB } } } }`, { t: a.tenantId, p: a.projectId });
    expect(quota.project.quota.usage).toEqual({ vms: 1, vcpus: 3, memoryMiB: 2048 });
  });
});
