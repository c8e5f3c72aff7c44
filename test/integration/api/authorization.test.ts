import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { v7 as uuidv7 } from "uuid";
import { createApiHarness, type ApiHarness, type TestActor } from "./support/harness.ts";
import { actors, createTestAuth, type RecordedRoute } from "./support/test-auth.ts";
import { TaskDriver } from "../tasks/support.ts";
import { fakeDeadLetters } from "../dlq/support.ts";

/**
 * Every route x every kind of caller -> the status it must get. The table is
 * the specification: a route the server registers without a row here fails
 * the test, so adding a route means deciding who may call it.
 *
 * The world: tenant A (projects P1 with environment E1, and P2) and tenant B.
 * Callers: anonymous, B's tenant-admin ("other"), A's tenant-admin ("owner"),
 * a project-member of A/P1, an auditor of A, a platform-admin.
 */
type Caller = "anonymous" | "other" | "owner" | "member" | "auditor" | "platform";
const CALLERS: readonly Caller[] = ["anonymous", "other", "owner", "member", "auditor", "platform"];

interface World {
  readonly a: string;
  readonly b: string;
  readonly p1: string;
  readonly p2: string;
  readonly e1: string;
  /** Tasks: running in A/P1, tenant-wide in A, in B. */
  readonly tasks: { readonly ap1: string; readonly a: string; readonly b: string };
}

interface Row {
  readonly method: string;
  /** The route template as fastify registers it. */
  readonly route: string;
  /** Which instance of the route this row calls (several rows may share a route). */
  readonly label?: string;
  /** The concrete request; may prepare fresh resources (as platform-admin) first. */
  request(world: World, h: MatrixHarness): Promise<{ url: string; payload?: Payload }>;
  readonly expect: Readonly<Record<Caller, number>>;
  /** For lists: the ids each caller may see must be exactly these. */
  readonly sees?: (world: World) => Partial<Record<Caller, readonly string[]>>;
  /** Undoes what a call changed, so rows stay independent. */
  readonly after?: (world: World, h: ApiHarness) => Promise<unknown>;
}

const all = (status: number): Record<Caller, number> => ({ anonymous: status, other: status, owner: status, member: status, auditor: status, platform: status });
const unique = () => `n-${uuidv7().slice(-12)}`;
type Payload = Record<string, unknown>;
const at = (url: string, payload?: Payload) => async () => ({ url, ...(payload !== undefined ? { payload } : {}) });

const ROWS: readonly Row[] = [
  // ---- internal routes: public ----
  { method: "GET", route: "/healthz", request: at("/healthz"), expect: all(200) },
  { method: "GET", route: "/readyz", request: at("/readyz"), expect: all(200) },
  { method: "GET", route: "/metrics", request: at("/metrics"), expect: all(200) },
  { method: "GET", route: "/v1/openapi.json", request: at("/v1/openapi.json"), expect: all(200) },

  // ---- tenants ----
  {
    method: "POST",
    route: "/v1/tenants",
    request: async () => ({ url: "/v1/tenants", payload: { name: unique() } }),
    expect: { anonymous: 401, other: 403, owner: 403, member: 403, auditor: 403, platform: 201 },
  },
  {
    method: "GET",
    route: "/v1/tenants",
    request: at("/v1/tenants?limit=200"),
    expect: { anonymous: 401, other: 200, owner: 200, member: 200, auditor: 200, platform: 200 },
    sees: (w) => ({ other: [w.b], owner: [w.a], member: [w.a], auditor: [w.a] }),
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId",
    request: async (w) => ({ url: `/v1/tenants/${w.a}` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "PATCH",
    route: "/v1/tenants/:tenantId",
    request: async (w) => ({ url: `/v1/tenants/${w.a}`, payload: { displayName: "Tenant A" } }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 403, auditor: 403, platform: 200 },
  },
  {
    method: "POST",
    route: "/v1/tenants/:tenantId/suspend",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/suspend`, payload: { reason: "matrix" } }),
    expect: { anonymous: 401, other: 404, owner: 403, member: 403, auditor: 403, platform: 200 },
    // Resumed after every call, so no other row meets a suspended tenant.
    after: (w, h) => h.call(actors.platformAdmin(), { method: "POST", url: `/v1/tenants/${w.a}/resume` }),
  },
  {
    method: "POST",
    route: "/v1/tenants/:tenantId/resume",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/resume` }),
    expect: { anonymous: 401, other: 404, owner: 403, member: 403, auditor: 403, platform: 200 },
  },

  // ---- projects ----
  {
    method: "POST",
    route: "/v1/tenants/:tenantId/projects",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects`, payload: { name: unique() } }),
    expect: { anonymous: 401, other: 404, owner: 201, member: 403, auditor: 403, platform: 201 },
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/projects",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects?limit=200&name=p1` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
    sees: (w) => ({ owner: [w.p1], member: [w.p1], auditor: [w.p1], platform: [w.p1] }),
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/projects",
    label: "only the member's own project",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects?limit=200&status=active` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
    sees: (w) => ({ member: [w.p1] }),
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/projects/:projectId",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p1}` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/projects/:projectId",
    label: "a sibling project",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p2}` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 404, auditor: 200, platform: 200 },
  },
  {
    method: "POST",
    route: "/v1/tenants/:tenantId/projects/:projectId/archive",
    // P1 keeps an active environment: whoever may archive gets the domain's 409, nobody archives it.
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p1}/archive` }),
    expect: { anonymous: 401, other: 404, owner: 409, member: 403, auditor: 403, platform: 409 },
  },

  // ---- environments ----
  {
    method: "POST",
    route: "/v1/tenants/:tenantId/projects/:projectId/environments",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p1}/environments`, payload: { name: unique() } }),
    expect: { anonymous: 401, other: 404, owner: 201, member: 201, auditor: 403, platform: 201 },
  },
  {
    method: "POST",
    route: "/v1/tenants/:tenantId/projects/:projectId/environments",
    label: "in a sibling project",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p2}/environments`, payload: { name: unique() } }),
    expect: { anonymous: 401, other: 404, owner: 201, member: 404, auditor: 403, platform: 201 },
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/projects/:projectId/environments",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p1}/environments?name=e1` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
    sees: (w) => ({ owner: [w.e1], member: [w.e1], auditor: [w.e1], platform: [w.e1] }),
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/projects/:projectId/environments/:environmentId",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p1}/environments/${w.e1}` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "POST",
    route: "/v1/tenants/:tenantId/projects/:projectId/environments/:environmentId/archive",
    request: async (w, h) => ({ url: `/v1/tenants/${w.a}/projects/${w.p1}/environments/${await h.spareEnvironment(w)}/archive` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 403, platform: 200 },
  },

  // ---- quotas ----
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/quota",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/quota` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "PUT",
    route: "/v1/tenants/:tenantId/quota",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/quota`, payload: { limits: { vcpus: 100 } } }),
    expect: { anonymous: 401, other: 404, owner: 403, member: 403, auditor: 403, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/projects/:projectId/quota",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p1}/quota` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/tenants/:tenantId/projects/:projectId/quota",
    label: "of a sibling project",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p2}/quota` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 404, auditor: 200, platform: 200 },
  },
  {
    method: "PUT",
    route: "/v1/tenants/:tenantId/projects/:projectId/quota",
    request: async (w) => ({ url: `/v1/tenants/${w.a}/projects/${w.p1}/quota`, payload: { limits: { vcpus: 10 } } }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 403, auditor: 403, platform: 200 },
  },
  // ---- tasks: visible with their scope; cancel/retry need write access to it ----
  {
    method: "GET",
    route: "/v1/tasks",
    request: at("/v1/tasks?limit=200"),
    expect: { anonymous: 401, other: 200, owner: 200, member: 200, auditor: 200, platform: 200 },
    sees: (w) => ({ other: [w.tasks.b], owner: [w.tasks.ap1, w.tasks.a], member: [w.tasks.ap1, w.tasks.a], auditor: [w.tasks.ap1, w.tasks.a] }),
  },
  {
    method: "GET",
    route: "/v1/tasks/:taskId",
    request: async (w) => ({ url: `/v1/tasks/${w.tasks.ap1}` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "POST",
    route: "/v1/tasks/:taskId/cancel",
    request: async (w) => ({ url: `/v1/tasks/${w.tasks.ap1}/cancel`, payload: { reason: "matrix" } }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 403, platform: 200 },
  },
  {
    method: "POST",
    route: "/v1/tasks/:taskId/retry",
    request: async (w, h) => ({ url: `/v1/tasks/${await failedTask(w, h)}/retry`, payload: {} }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 403, platform: 200 },
  },

  // ---- inventory: the platform's own; platform-admins import and approve, platform readers read ----
  { method: "GET", route: "/v1/schemas/inventory.json", request: at("/v1/schemas/inventory.json"), expect: { ...all(200), anonymous: 401 } },
  {
    method: "POST",
    route: "/v1/inventory/import",
    request: at("/v1/inventory/import", { document: { datacenters: [] }, dryRun: true }),
    expect: { anonymous: 401, other: 403, owner: 403, member: 403, auditor: 403, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/datacenters",
    request: at("/v1/datacenters"),
    expect: { anonymous: 401, other: 403, owner: 403, member: 403, auditor: 403, platform: 200 },
  },
  { method: "GET", route: "/v1/datacenters/:datacenter", request: at("/v1/datacenters/osl9"), expect: { ...all(404), anonymous: 401 } },
  {
    method: "GET",
    route: "/v1/hosts",
    request: at("/v1/hosts"),
    expect: { anonymous: 401, other: 403, owner: 403, member: 403, auditor: 403, platform: 200 },
  },
  { method: "GET", route: "/v1/hosts/:hostId", request: at("/v1/hosts/missing"), expect: { ...all(404), anonymous: 401 } },
  {
    method: "POST",
    route: "/v1/hosts/:hostId/approve-identity",
    request: at("/v1/hosts/missing/approve-identity", {}),
    expect: { ...all(404), anonymous: 401 },
  },

  // ---- host actions: tasks on platform hardware (api/rest/hosts-actions.ts) ----
  {
    method: "GET",
    route: "/v1/hosts/:hostId/tasks/:taskId/outputs",
    request: async (_w, h) => {
      const host = await matrixHost(h);
      const check = await h.call(actors.platformAdmin(), { method: "POST", url: `/v1/hosts/${host}/bmc-check`, payload: {} });
      return { url: `/v1/hosts/${host}/tasks/${JSON.parse(check.body).taskId}/outputs` };
    },
    expect: { anonymous: 401, other: 404, owner: 404, member: 404, auditor: 404, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/hosts/:hostId/status",
    request: async (_w, h) => ({ url: `/v1/hosts/${await matrixHost(h)}/status` }),
    expect: { anonymous: 401, other: 404, owner: 404, member: 404, auditor: 404, platform: 200 },
  },
  {
    method: "POST",
    route: "/v1/hosts/:hostId/provision",
    request: async (w, h) => ({ url: `/v1/hosts/${await matrixHost(h)}/provision`, payload: { tenantId: w.a, projectId: w.p1 } }),
    // A tenant-admin of the body's tenant may take a free host; nobody else below platform-admin learns it exists.
    expect: { anonymous: 401, other: 404, owner: 202, member: 404, auditor: 404, platform: 202 },
  },
  {
    method: "POST",
    route: "/v1/hosts/:hostId/release",
    request: async (_w, h) => ({ url: `/v1/hosts/${await matrixHost(h)}/release`, payload: {} }),
    // Held by nobody: only a platform-admin (a tenant-admin may release what their tenant holds).
    expect: { anonymous: 401, other: 404, owner: 404, member: 404, auditor: 404, platform: 202 },
  },
  {
    method: "POST",
    route: "/v1/hosts/:hostId/power",
    request: async (_w, h) => ({ url: `/v1/hosts/${await matrixHost(h)}/power`, payload: { operation: "cycle" } }),
    expect: { anonymous: 401, other: 404, owner: 404, member: 404, auditor: 404, platform: 202 },
  },
  {
    method: "POST",
    route: "/v1/hosts/:hostId/bmc-check",
    request: async (_w, h) => ({ url: `/v1/hosts/${await matrixHost(h)}/bmc-check`, payload: {} }),
    expect: { anonymous: 401, other: 404, owner: 404, member: 404, auditor: 404, platform: 202 },
  },

  // ---- VMs: a tenant's project's (readers of the project see them, writers act; others 404) ----
  {
    method: "POST",
    route: "/v1/vms",
    request: async (w) => ({ url: "/v1/vms", payload: matrixVmBody(w) }),
    expect: { anonymous: 401, other: 404, owner: 202, member: 202, auditor: 403, platform: 202 },
  },
  {
    method: "GET",
    route: "/v1/vms",
    request: at("/v1/vms"),
    expect: { anonymous: 401, other: 200, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/vms/:vmId",
    request: async (w, h) => ({ url: `/v1/vms/${await matrixVm(w, h)}` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/vms/:vmId/explain",
    request: async (w, h) => ({ url: `/v1/vms/${await matrixVm(w, h)}/explain` }),
    expect: { anonymous: 401, other: 404, owner: 200, member: 200, auditor: 200, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/vms/:vmId/console",
    request: async (w, h) => ({ url: `/v1/vms/${await matrixVm(w, h)}/console` }),
    // The matrix VM is never placed: readers learn that (409), nobody else that it exists.
    expect: { anonymous: 401, other: 404, owner: 409, member: 409, auditor: 409, platform: 409 },
  },
  ...(["start", "stop", "reboot", "reconcile"] as const).map(
    (operation): Row => ({
      method: "POST",
      route: `/v1/vms/:vmId/${operation}`,
      request: async (w, h) => ({ url: `/v1/vms/${await matrixVm(w, h)}/${operation}`, payload: {} }),
      // A VM still requested cannot be powered: writers get 409, the auditor 403.
      expect: { anonymous: 401, other: 404, owner: 409, member: 409, auditor: 403, platform: 409 },
    }),
  ),
  {
    method: "DELETE",
    route: "/v1/vms/:vmId",
    request: async (w, h) => ({ url: `/v1/vms/${await matrixVm(w, h)}` }),
    expect: { anonymous: 401, other: 404, owner: 202, member: 202, auditor: 403, platform: 202 },
  },

  // ---- hypervisors: the platform's (platform readers read, platform-admins act; a hypervisor is 404 to anyone else) ----
  {
    method: "GET",
    route: "/v1/hypervisors",
    request: at("/v1/hypervisors"),
    expect: { anonymous: 401, other: 403, owner: 403, member: 403, auditor: 403, platform: 200 },
  },
  { method: "GET", route: "/v1/hypervisors/:hostId", request: at("/v1/hypervisors/missing"), expect: { ...all(404), anonymous: 401 } },
  { method: "POST", route: "/v1/hypervisors/:hostId/cordon", request: at("/v1/hypervisors/missing/cordon", { reason: "matrix" }), expect: { ...all(404), anonymous: 401 } },
  { method: "POST", route: "/v1/hypervisors/:hostId/uncordon", request: at("/v1/hypervisors/missing/uncordon", {}), expect: { ...all(404), anonymous: 401 } },
  { method: "POST", route: "/v1/hypervisors/:hostId/drain", request: at("/v1/hypervisors/missing/drain", { reason: "matrix" }), expect: { ...all(404), anonymous: 401 } },

  // ---- images: platform-admins register; every authenticated caller reads (sources only for platform readers) ----
  {
    method: "POST",
    route: "/v1/images",
    request: async () => ({
      url: "/v1/images",
      payload: { name: unique(), version: "1", digest: "a".repeat(64), format: "raw", source: { kind: "url", url: "http://images.example/matrix.raw" }, osFamily: "linux", guestInit: "none" },
    }),
    expect: { anonymous: 401, other: 403, owner: 403, member: 403, auditor: 403, platform: 201 },
  },
  { method: "GET", route: "/v1/images", request: at("/v1/images"), expect: { ...all(200), anonymous: 401 } },
  { method: "GET", route: "/v1/images/:name", request: at("/v1/images/missing"), expect: { ...all(404), anonymous: 401 } },

  // ---- disk images: platform readers see all, tenants those their projects' VMs reference; platform-admins delete ----
  { method: "GET", route: "/v1/disk-images", request: at("/v1/disk-images"), expect: { ...all(200), anonymous: 401 } },
  { method: "GET", route: "/v1/disk-images/:datacenter/:name", request: at("/v1/disk-images/osl1/missing"), expect: { ...all(404), anonymous: 401 } },
  {
    method: "GET",
    route: "/v1/disk-images/:datacenter/:name/why-not-deleted",
    request: at("/v1/disk-images/osl1/missing/why-not-deleted"),
    expect: { ...all(404), anonymous: 401 },
  },
  { method: "DELETE", route: "/v1/disk-images/:datacenter/:name", request: at("/v1/disk-images/osl1/missing"), expect: { ...all(404), anonymous: 401 } },

  // ---- dead-letter queue: the platform's; platform-admins and platform auditors read, platform-admins replay ----
  {
    method: "GET",
    route: "/v1/dlq",
    request: at("/v1/dlq"),
    expect: { anonymous: 401, other: 403, owner: 403, member: 403, auditor: 403, platform: 200 },
  },
  {
    method: "GET",
    route: "/v1/dlq/:sequence",
    request: at("/v1/dlq/917"),
    expect: { anonymous: 401, other: 404, owner: 404, member: 404, auditor: 404, platform: 200 },
  },
  {
    method: "POST",
    route: "/v1/dlq/:sequence/replay",
    request: at("/v1/dlq/917/replay", {}),
    expect: { anonymous: 401, other: 404, owner: 404, member: 404, auditor: 404, platform: 200 },
  },
];

/** One host in the inventory (imported once per harness) for the host action rows. */
const matrixHosts = new WeakMap<object, Promise<string>>();
function matrixHost(h: ApiHarness): Promise<string> {
  let id = matrixHosts.get(h);
  if (!id) {
    id = (async () => {
      const platform = actors.platformAdmin();
      const document = { datacenters: [{ name: "osl1", racks: [{ name: "r01", hosts: [{ name: "m-node", serial: "SN-M", macs: ["52:54:00:aa:bb:01"] }] }] }] };
      const imported = await h.call(platform, { method: "POST", url: "/v1/inventory/import", payload: { document } });
      if (imported.statusCode !== 200) throw new Error(`inventory import: ${imported.statusCode} ${imported.body}`);
      const list = await h.call(platform, { method: "GET", url: "/v1/hosts?name=m-node" });
      return (JSON.parse(list.body).items as Array<{ id: string }>)[0]!.id;
    })();
    matrixHosts.set(h, id);
  }
  return id;
}

/** A VM in A/P1 (created once per harness, as platform-admin), readable once the maskin_vms read model has it. */
function matrixVmBody(w: World) {
  return { name: unique(), tenantId: w.a, projectId: w.p1, datacenter: "osl1", resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 }, disk: { name: "matrix-disk", mode: "FailIfNotExist" } };
}
const matrixVms = new WeakMap<object, Promise<string>>();
function matrixVm(w: World, h: ApiHarness): Promise<string> {
  let id = matrixVms.get(h);
  if (!id) {
    id = (async () => {
      const platform = actors.platformAdmin();
      const created = await h.call(platform, { method: "POST", url: "/v1/vms", payload: matrixVmBody(w) });
      if (created.statusCode !== 202) throw new Error(`create VM: ${created.statusCode} ${created.body}`);
      const vmId = JSON.parse(created.body).vmId as string;
      const deadline = Date.now() + 20_000;
      while ((await h.call(platform, { method: "GET", url: `/v1/vms/${vmId}` })).statusCode !== 200) {
        if (Date.now() > deadline) throw new Error(`VM ${vmId} never reached the read model`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return vmId;
    })();
    matrixVms.set(h, id);
  }
  return id;
}

/** A fresh failed task in A/P1 (each retry row call needs its own). */
async function failedTask(w: World, h: ApiHarness): Promise<string> {
  const task = new TaskDriver(h.db.store, `failed-${uuidv7()}`, { tenantId: w.a, projectId: w.p1, environmentId: null });
  await task.create(["one"]);
  await task.start("one");
  const { position } = await task.fail("matrix");
  await h.runner.waitForPosition("tasks", position!, 20_000);
  return task.taskId;
}

type MatrixHarness = ApiHarness & { spareEnvironment(world: World): Promise<string> };

describe("authorization matrix", () => {
  let h: MatrixHarness;
  let world: World;
  let callers: Record<Caller, TestActor | null>;
  const routes: RecordedRoute[] = [];
  const platform = actors.platformAdmin();

  async function create(url: string, payload: Payload): Promise<string> {
    const response = await h.call(platform, { method: "POST", url, payload });
    expect(response.statusCode, response.body).toBe(201);
    return JSON.parse(response.body).id as string;
  }

  beforeAll(async () => {
    const base = await createApiHarness({ auth: createTestAuth({ routes }), deadLetters: fakeDeadLetters([917]) });
    h = Object.assign(base, {
      spareEnvironment: (w: World) => create(`/v1/tenants/${w.a}/projects/${w.p1}/environments`, { name: unique() }),
    });
    const a = await create("/v1/tenants", { name: "tenant-a" });
    const b = await create("/v1/tenants", { name: "tenant-b" });
    const p1 = await create(`/v1/tenants/${a}/projects`, { name: "p1" });
    const p2 = await create(`/v1/tenants/${a}/projects`, { name: "p2" });
    await create(`/v1/tenants/${b}/projects`, { name: "q1" });
    const e1 = await create(`/v1/tenants/${a}/projects/${p1}/environments`, { name: "e1" });
    const task = async (taskId: string, tenantId: string, projectId: string | null) => {
      const driver = new TaskDriver(h.db.store, taskId, { tenantId, projectId, environmentId: null });
      await driver.create(["one"]);
      const { position } = await driver.start("one");
      await h.runner.waitForPosition("tasks", position!, 20_000);
      return taskId;
    };
    const tasks = { ap1: await task("task-ap1", a, p1), a: await task("task-a", a, null), b: await task("task-b", b, null) };
    world = { a, b, p1, p2, e1, tasks };
    callers = {
      anonymous: null,
      other: actors.tenantAdmin(b),
      owner: actors.tenantAdmin(a),
      member: actors.member(a, p1),
      auditor: actors.auditor(a),
      platform,
    };
  });
  afterAll(async () => {
    await h?.dispose();
  });

  it("has a row for every route the server registers, and every row names a registered route", () => {
    const registered = new Set(routes.filter((r) => r.method !== "HEAD").map((r) => `${r.method} ${r.url}`));
    const covered = new Set(ROWS.map((row) => `${row.method} ${row.route}`));
    expect(registered.size).toBeGreaterThan(20);
    expect([...registered].filter((route) => !covered.has(route)), "routes without a row in the matrix").toEqual([]);
    expect([...covered].filter((route) => !registered.has(route)), "rows for routes that do not exist").toEqual([]);
  });

  for (const row of ROWS) {
    it(`${row.method} ${row.route}${row.label ? ` (${row.label})` : ""}`, async () => {
      for (const caller of CALLERS) {
        const { url, payload } = await row.request(world, h);
        const response = await h.call(callers[caller], { method: row.method as "GET", url, ...(payload !== undefined ? { payload } : {}) });
        const expected = row.expect[caller];
        expect(response.statusCode, `${caller}: ${row.method} ${url} -> ${response.body.slice(0, 300)}`).toBe(expected);
        if (expected >= 400) {
          expect(response.headers["content-type"], caller).toMatch(/^application\/problem\+json/);
          const problem = JSON.parse(response.body);
          expect(problem.status).toBe(expected);
          if (expected === 401) expect(response.headers["www-authenticate"]).toBe("Bearer");
        }
        if (expected === 404) await expectSameAsMissing(caller, row, url, payload, response.body);
        await row.after?.(world, h);
        const visible = row.sees?.(world)[caller];
        if (visible) {
          const ids = (JSON.parse(response.body).items as Array<{ id: string }>).map((item) => item.id);
          expect(ids.sort(), `${caller} sees exactly`).toEqual([...visible].sort());
        }
      }
    });
  }

  it("never lists another tenant's rows to a tenant's admin, member or auditor", async () => {
    for (const caller of ["other", "owner", "member", "auditor"] as const) {
      const response = await h.call(callers[caller], { method: "GET", url: "/v1/tenants?limit=200" });
      const tenants = (JSON.parse(response.body).items as Array<{ id: string }>).map((t) => t.id);
      expect(tenants, caller).toEqual([caller === "other" ? world.b : world.a]);
    }
    const everything = await h.call(callers.platform, { method: "GET", url: "/v1/tenants?limit=200" });
    expect(JSON.parse(everything.body).items.length).toBeGreaterThan(2);
  });

  /**
   * No existence leak: a 404 for a resource the caller may not see is byte for
   * byte the 404 for one that does not exist (ids, correlation and instance aside).
   */
  async function expectSameAsMissing(caller: Caller, row: Row, url: string, payload: Payload | undefined, body: string) {
    const missing = `missing-${uuidv7()}`;
    // Replace the id of the outermost thing the caller cannot see; the problem's code says which.
    const problem = JSON.parse(body) as { code: string };
    const segment = { tenant_not_found: 3, project_not_found: 5, environment_not_found: 7, task_not_found: 3, datacenter_not_found: 3, host_not_found: 3, dead_letter_not_found: 3, hypervisor_not_found: 3, image_not_found: 3, disk_image_not_found: 4, vm_not_found: 3 }[problem.code];
    if (segment === undefined) throw new Error(`unexpected 404 code ${problem.code}`);
    const path = url.split("?")[0]!.split("/");
    const inBody = problem.code === "project_not_found" && !path[segment] && typeof payload?.projectId === "string";
    if (inBody) {
      // POST /v1/vms names its project in the body: a missing project there must answer the same.
      const response = await h.call(callers[caller], { method: row.method as "GET", url, payload: { ...payload, projectId: missing } });
      const normalize = (text: string, id: string) => JSON.stringify({ ...JSON.parse(text.replaceAll(id, "<id>")), correlationId: undefined });
      expect(response.statusCode).toBe(404);
      expect(normalize(response.body, missing), `${caller} ${row.method} ${url}`).toBe(normalize(body, payload.projectId as string));
      return;
    }
    const target = path[segment];
    if (!target) throw new Error(`no id at segment ${segment} of ${url}`);
    path[segment] = missing;
    const other = path.join("/") + (url.includes("?") ? url.slice(url.indexOf("?")) : "");
    const response = await h.call(callers[caller], { method: row.method as "GET", url: other, ...(payload !== undefined ? { payload } : {}) });
    const normalize = (text: string, id: string, path: string) =>
      JSON.stringify({ ...JSON.parse(text.replaceAll(id, "<id>")), correlationId: undefined, instance: path.split("?")[0]!.replaceAll(id, "<id>") });
    expect(response.statusCode).toBe(404);
    expect(normalize(response.body, missing, other), `${caller} ${row.method} ${url}`).toBe(normalize(body, target, url));
  }
});
