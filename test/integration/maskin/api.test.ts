import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executeHostCommand, executePoolCommand } from "../../../commands/maskin/index.ts";
import { createHash } from "node:crypto";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import { maskinHostsProjection, ProjectionRunner } from "../../../projections/index.ts";
import { loadHost } from "../../../sagas/maskin/index.ts";
import { createApiHarness, type ApiHarness, type TestActor } from "../api/support/harness.ts";
import { actors } from "../api/support/test-auth.ts";

/**
 * The host action routes: who may start which task, what the answer carries
 * (202, X-Dv-Task, the task readable at once), Idempotency-Key, and the
 * refusals (404 for who cannot see the host, 409 for a host that cannot be
 * released now). The sagas themselves are tested in saga.test.ts.
 */
describe("REST host actions", () => {
  let h: ApiHarness;
  /** The maskin.hosts read model behind /v1/hosts/{id}/status (the shared API harness does not run it). */
  let hostsRunner: ProjectionRunner;
  const admin = actors.platformAdmin();
  let a: string;
  let b: string;
  let p1: string;
  let e1: string;
  const hosts: Record<string, string> = {};

  const post = (actor: TestActor | null, url: string, payload: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
    h.call(actor, { method: "POST", url, payload, headers });
  const created = async (url: string, payload: Record<string, unknown>) => {
    const response = await post(admin, url, payload);
    expect(response.statusCode, response.body).toBe(201);
    return response.json().id as string;
  };
  const ctx = { actor: { kind: "user", id: "test" } as const, correlationId: "test", scope: { tenantId: PLATFORM_TENANT } };
  const at = () => new Date().toISOString();

  beforeAll(async () => {
    h = await createApiHarness();
    hostsRunner = new ProjectionRunner({ pool: h.db.pool, store: h.db.store, projections: [maskinHostsProjection], pollIntervalMs: 200 });
    await hostsRunner.start();
    a = await created("/v1/tenants", { name: "tenant-a" });
    b = await created("/v1/tenants", { name: "tenant-b" });
    p1 = await created(`/v1/tenants/${a}/projects`, { name: "p1" });
    e1 = await created(`/v1/tenants/${a}/projects/${p1}/environments`, { name: "e1" });
    const imported = await post(admin, "/v1/inventory/import", {
      document: {
        datacenters: [
          {
            name: "osl1",
            racks: [{ name: "r01", hosts: ["node-01", "node-02", "node-03", "node-04"].map((name, i) => ({ name, serial: `SN${i}`, macs: [`52:54:00:12:34:0${i + 1}`] })) }],
          },
        ],
      },
    });
    expect(imported.statusCode, imported.body).toBe(200);
    const list = await h.call(admin, { method: "GET", url: "/v1/hosts?datacenter=osl1" });
    for (const host of list.json().items as Array<{ id: string; name: string }>) hosts[host.name] = host.id;
    expect(Object.keys(hosts)).toHaveLength(4);
  });
  afterAll(async () => {
    await hostsRunner?.stop();
    await h?.dispose();
  });

  const task = async (taskId: string, actor: TestActor = admin) => {
    const response = await h.call(actor, { method: "GET", url: `/v1/tasks/${taskId}` });
    expect(response.statusCode, response.body).toBe(200);
    return response.json();
  };

  it("provision: 202 with the task id in X-Dv-Task and the body; the task is readable at once, scoped to the project", async () => {
    const host = hosts["node-01"]!;
    const response = await post(admin, `/v1/hosts/${host}/provision`, { tenantId: a, projectId: p1, environmentId: e1, role: "controlplane" });
    expect(response.statusCode, response.body).toBe(202);
    const body = response.json();
    expect(response.headers["x-dv-task"]).toBe(body.taskId);
    expect(body.taskId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
    expect(body).toMatchObject({ kind: "maskin.host-provision", location: `/v1/tasks/${body.taskId}` });
    const shown = await task(body.taskId, actors.tenantAdmin(a));
    expect(shown).toMatchObject({
      kind: "maskin.host-provision",
      resource: { type: "host", id: host },
      tenantId: a,
      projectId: p1,
      environmentId: e1,
      status: "pending",
    });
    expect(shown.steps.map((s: { name: string }) => s.name)).toEqual(["allocate", "boot-pxe", "power-on", "wait-netboot", "wait-install", "boot-disk", "ready"]);
    expect(Date.parse(shown.deadline) - Date.parse(shown.createdAt)).toBeGreaterThanOrEqual(29 * 60_000);
  });

  it("Idempotency-Key: the same request again answers the same task", async () => {
    const host = hosts["node-02"]!;
    const headers = { "idempotency-key": "provision-node-02" };
    const first = await post(admin, `/v1/hosts/${host}/provision`, { tenantId: a, projectId: p1 }, headers);
    const again = await post(admin, `/v1/hosts/${host}/provision`, { tenantId: a, projectId: p1 }, headers);
    expect(first.statusCode).toBe(202);
    expect(again.statusCode).toBe(202);
    expect(again.json().taskId).toBe(first.json().taskId);
    expect(again.headers["x-dv-task"]).toBe(first.json().taskId);
    const other = await post(admin, `/v1/hosts/${host}/provision`, { tenantId: a, projectId: p1 });
    expect(other.json().taskId).not.toBe(first.json().taskId);
  });

  it("provision: a tenant-admin of the body's tenant may take a free host only; others learn nothing", async () => {
    const host = hosts["node-03"]!;
    const owner = actors.tenantAdmin(a);
    const ok = await post(owner, `/v1/hosts/${host}/provision`, { tenantId: a, projectId: p1 });
    expect(ok.statusCode, ok.body).toBe(202);
    // Held by a task: to a tenant-admin that is the same 404 as a missing host.
    await executePoolCommand(h.db.store, { type: "AllocateHost", datacenter: "osl1", hostId: host, taskId: "holder", tenantId: b, projectId: "q", environmentId: null, at: at() }, ctx);
    const held = await post(owner, `/v1/hosts/${host}/provision`, { tenantId: a, projectId: p1 });
    const missing = await post(owner, `/v1/hosts/missing-host/provision`, { tenantId: a, projectId: p1 });
    expect(held.statusCode).toBe(404);
    expect(held.json().code).toBe("host_not_found");
    expect(missing.statusCode).toBe(404);
    // A platform-admin gets the task (which the pool then refuses with host_not_free).
    expect((await post(admin, `/v1/hosts/${host}/provision`, { tenantId: a, projectId: p1 })).statusCode).toBe(202);
    // Another tenant's admin, a member, a tenant auditor: 404 before the body is even looked at; a platform auditor: 403.
    for (const actor of [actors.tenantAdmin(b), actors.member(a, p1), actors.auditor(a)]) {
      const refused = await post(actor, `/v1/hosts/${hosts["node-04"]}/provision`, { tenantId: a, projectId: p1 });
      expect(refused.statusCode, actor.id).toBe(404);
      expect(refused.json().code).toBe("host_not_found");
      expect((await post(actor, `/v1/hosts/${hosts["node-04"]}/provision`, { nonsense: true })).statusCode).toBe(404);
    }
    expect((await post(actors.auditor(), `/v1/hosts/${hosts["node-04"]}/provision`, { tenantId: a, projectId: p1 })).statusCode).toBe(403);
    expect((await post(null, `/v1/hosts/${hosts["node-04"]}/provision`, { tenantId: a, projectId: p1 })).statusCode).toBe(401);
    // A project or environment that does not exist.
    const noProject = await post(admin, `/v1/hosts/${hosts["node-04"]}/provision`, { tenantId: a, projectId: "nope" });
    expect([noProject.statusCode, noProject.json().code]).toEqual([404, "project_not_found"]);
    const noEnv = await post(admin, `/v1/hosts/${hosts["node-04"]}/provision`, { tenantId: a, projectId: p1, environmentId: "nope" });
    expect([noEnv.statusCode, noEnv.json().code]).toEqual([404, "environment_not_found"]);
    const badRole = await post(admin, `/v1/hosts/${hosts["node-04"]}/provision`, { tenantId: a, projectId: p1, role: "master" });
    expect(badRole.statusCode).toBe(400);
  });

  it("power: platform-admins; on/off set the desired power; cycle does not", async () => {
    const host = hosts["node-04"]!;
    const off = await post(admin, `/v1/hosts/${host}/power`, { operation: "off" });
    expect(off.statusCode, off.body).toBe(202);
    const shown = await task(off.json().taskId);
    expect(shown).toMatchObject({ kind: "maskin.host-power", tenantId: PLATFORM_TENANT, projectId: null, resource: { type: "host", id: host } });
    expect((await loadHost(h.db.store, host)).desiredPower).toMatchObject({ state: "off", taskId: off.json().taskId });
    const cycle = await post(admin, `/v1/hosts/${host}/power`, { operation: "cycle" });
    expect(cycle.statusCode).toBe(202);
    expect((await loadHost(h.db.store, host)).desiredPower?.state).toBe("off");
    expect((await post(admin, `/v1/hosts/${host}/power`, { operation: "explode" })).statusCode).toBe(400);
    expect((await post(actors.tenantAdmin(a), `/v1/hosts/${host}/power`, { operation: "on" })).statusCode).toBe(404);
    expect((await post(actors.auditor(), `/v1/hosts/${host}/power`, { operation: "on" })).statusCode).toBe(403);
    expect((await post(admin, `/v1/hosts/missing-host/power`, { operation: "on" })).statusCode).toBe(404);
  });

  it("status: lifecycle, power and drift for platform readers; 404 for others", async () => {
    const host = hosts["node-04"]!;
    const status = await h.call(admin, { method: "GET", url: `/v1/hosts/${host}/status` });
    expect(status.statusCode, status.body).toBe(200);
    expect(status.json()).toMatchObject({ hostId: host, power: { drift: expect.any(Boolean) } });
    expect((await h.call(actors.auditor(), { method: "GET", url: `/v1/hosts/${host}/status` })).statusCode).toBe(200);
    expect((await h.call(actors.tenantAdmin(a), { method: "GET", url: `/v1/hosts/${host}/status` })).statusCode).toBe(404);
    expect((await h.call(admin, { method: "GET", url: `/v1/hosts/missing-host/status` })).statusCode).toBe(404);
  });

  it("bmc-check: platform-admins; one power-status step", async () => {
    const host = hosts["node-04"]!;
    const check = await post(admin, `/v1/hosts/${host}/bmc-check`);
    expect(check.statusCode, check.body).toBe(202);
    const shown = await task(check.json().taskId);
    expect(shown).toMatchObject({ kind: "maskin.bmc-check", steps: [{ name: "power-status" }] });
    expect((await post(actors.tenantAdmin(a), `/v1/hosts/${host}/bmc-check`)).statusCode).toBe(404);
    // Its outputs (none yet: no worker here) for platform readers; another host's path does not find it.
    const outputs = await h.call(admin, { method: "GET", url: `/v1/hosts/${host}/tasks/${check.json().taskId}/outputs` });
    expect(outputs.statusCode, outputs.body).toBe(200);
    expect(outputs.json()).toEqual({ taskId: check.json().taskId, kind: "maskin.bmc-check", steps: [{ name: "power-status", output: null }] });
    expect((await h.call(admin, { method: "GET", url: `/v1/hosts/${hosts["node-01"]}/tasks/${check.json().taskId}/outputs` })).statusCode).toBe(404);
    expect((await h.call(actors.tenantAdmin(a), { method: "GET", url: `/v1/hosts/${host}/tasks/${check.json().taskId}/outputs` })).statusCode).toBe(404);
  });

  it("release: the holder's tenant-admin or a platform-admin; 409 while another task provisions it", async () => {
    const host = hosts["node-04"]!;
    await executePoolCommand(h.db.store, { type: "AllocateHost", datacenter: "osl1", hostId: host, taskId: "prov-4", tenantId: a, projectId: p1, environmentId: null, at: at() }, ctx);
    await executeHostCommand(
      h.db.store,
      { type: "StartProvisioning", hostId: host, datacenter: "osl1", taskId: "prov-4", tenantId: a, projectId: p1, environmentId: null, role: "worker", at: at() },
      ctx,
    );
    const busy = await post(admin, `/v1/hosts/${host}/release`);
    expect(busy.statusCode, busy.body).toBe(409);
    expect(busy.json().code).toBe("host_not_releasable");
    await executeHostCommand(h.db.store, { type: "FailProvisioning", hostId: host, taskId: "prov-4", reason: "test", at: at() }, ctx);
    // Not theirs: 404 to another tenant's admin.
    expect((await post(actors.tenantAdmin(b), `/v1/hosts/${host}/release`)).statusCode).toBe(404);
    const released = await post(actors.tenantAdmin(a), `/v1/hosts/${host}/release`);
    expect(released.statusCode, released.body).toBe(202);
    const shown = await task(released.json().taskId, actors.tenantAdmin(a));
    expect(shown).toMatchObject({ kind: "maskin.host-release", tenantId: a, projectId: p1, steps: ["power-off", "request-wipe", "boot-pxe", "power-on", "wait-wipe", "power-off-wiped", "return"].map((name) => ({ name })) });
    expect((await loadHost(h.db.store, host)).state).toBe("releasing");

    // The status shows the wipe as the boot service records it: stage, release task, when.
    const releaseId = released.json().taskId as string;
    const requested = await executeHostCommand(h.db.store, { type: "RequestWipe", hostId: host, datacenter: "osl1", taskId: releaseId, at: "2026-12-01T10:00:00.000Z" }, ctx);
    await executeHostCommand(
      h.db.store,
      { type: "RecordWipeNetbootFetched", hostId: host, mac: "52:54:00:12:34:04", tokenDigest: createHash("sha256").update("wipe-4").digest("hex"), at: "2026-12-01T10:00:05.000Z" },
      ctx,
    );
    const statusOf = async () => {
      const response = await h.call(admin, { method: "GET", url: `/v1/hosts/${host}/status` });
      expect(response.statusCode, response.body).toBe(200);
      return response.json();
    };
    expect(requested.position).toBeTruthy();
    await expect.poll(async () => (await statusOf()).wipe?.stage, { timeout: 20_000 }).toBe("netboot-fetched");
    expect(await statusOf()).toMatchObject({
      state: "releasing",
      taskId: releaseId,
      wipe: { stage: "netboot-fetched", taskId: releaseId, requestedAt: "2026-12-01T10:00:00.000Z", netbootFetchedAt: "2026-12-01T10:00:05.000Z", reportedAt: null, devices: [] },
      releaseFailure: null,
    });
    // The release task fails (its deadline): release_failed, the wipe ended with it, the reason shown ...
    await executeHostCommand(h.db.store, { type: "FailRelease", hostId: host, taskId: releaseId, reason: "deadline passed", at: "2026-12-01T12:00:00.000Z" }, ctx);
    await expect.poll(async () => (await statusOf()).state, { timeout: 20_000 }).toBe("release_failed");
    expect(await statusOf()).toMatchObject({
      taskId: releaseId,
      wipe: { stage: "wipe-failed", taskId: releaseId, netbootFetchedAt: "2026-12-01T10:00:05.000Z", reportedAt: null, message: "release task failed: deadline passed" },
      releaseFailure: { taskId: releaseId, reason: "deadline passed", at: "2026-12-01T12:00:00.000Z" },
    });
    // ... and the holder's admin may release it again: a new task takes over.
    const again = await post(actors.tenantAdmin(a), `/v1/hosts/${host}/release`);
    expect(again.statusCode, again.body).toBe(202);
    expect(await loadHost(h.db.store, host)).toMatchObject({ state: "releasing", releaseTaskId: again.json().taskId });
    await expect.poll(async () => (await statusOf()).state, { timeout: 20_000 }).toBe("releasing");
    expect((await statusOf()).releaseFailure).toBeNull();

    // A host nobody holds: only a platform-admin (a platform task).
    const free = hosts["node-02"]!;
    expect((await post(actors.tenantAdmin(a), `/v1/hosts/${free}/release`)).statusCode).toBe(404);
    const platformRelease = await post(admin, `/v1/hosts/${free}/release`);
    expect(platformRelease.statusCode).toBe(202);
    expect((await task(platformRelease.json().taskId)).tenantId).toBe(PLATFORM_TENANT);
  });
});
