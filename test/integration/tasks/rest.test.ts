import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiHarness, type ApiHarness } from "../api/support/harness.ts";
import { actors } from "../api/support/test-auth.ts";
import { TaskDriver } from "./support.ts";

let h: ApiHarness;
const root = actors.platformAdmin();
const adminA = actors.tenantAdmin("ta");
const adminB = actors.tenantAdmin("tb");
const memberP1 = actors.member("ta", "p1");
const memberP2 = actors.member("ta", "p2");
const auditorA = actors.auditor("ta");

let running: TaskDriver;
let done: TaskDriver;
let failed: TaskDriver;
let tenantWide: TaskDriver;
let inB: TaskDriver;

async function settle(d: TaskDriver, last: Promise<{ position: { transactionId: bigint; globalPosition: bigint } | null }>) {
  const { position } = await last;
  if (position) await h.runner.waitForPosition("tasks", position, 20_000);
  return d;
}

beforeAll(async () => {
  h = await createApiHarness();
  running = new TaskDriver(h.db.store, "t-running", { tenantId: "ta", projectId: "p1", environmentId: null });
  await running.create();
  await running.start("prepare");
  await settle(running, running.progress("prepare", 30, "warming up"));

  done = new TaskDriver(h.db.store, "t-done", { tenantId: "ta", projectId: "p1", environmentId: "e1" });
  await done.create(["one"]);
  await settle(done, done.runToSuccess(["one"]));

  failed = new TaskDriver(h.db.store, "t-failed", { tenantId: "ta", projectId: "p2", environmentId: null });
  await failed.create(["one", "two"]);
  await failed.start("one");
  await settle(failed, failed.fail("disk on fire"));

  tenantWide = new TaskDriver(h.db.store, "t-tenant", { tenantId: "ta", projectId: null, environmentId: null });
  await settle(tenantWide, tenantWide.create(["one"]));

  inB = new TaskDriver(h.db.store, "t-b", { tenantId: "tb", projectId: "bp", environmentId: null });
  await settle(inB, inB.create(["one"]));
});
afterAll(async () => {
  await h?.dispose();
});

const ids = (body: { items: Array<{ id: string }> }) => body.items.map((t) => t.id);

describe("GET /v1/tasks", () => {
  it("lists what the caller can see, by scope", async () => {
    const all = await h.call(root, { method: "GET", url: "/v1/tasks" });
    expect(all.statusCode, all.body).toBe(200);
    expect(ids(all.json())).toEqual(["t-b", "t-done", "t-failed", "t-running", "t-tenant"]);

    expect(ids((await h.call(adminA, { method: "GET", url: "/v1/tasks" })).json())).toEqual(["t-done", "t-failed", "t-running", "t-tenant"]);
    expect(ids((await h.call(adminB, { method: "GET", url: "/v1/tasks" })).json())).toEqual(["t-b"]);
    // A project member sees its project's tasks and its tenant's tenant-wide ones, not a sibling project's.
    expect(ids((await h.call(memberP1, { method: "GET", url: "/v1/tasks" })).json())).toEqual(["t-done", "t-running", "t-tenant"]);
    expect(ids((await h.call(auditorA, { method: "GET", url: "/v1/tasks?tenantId=tb" })).json())).toEqual([]);
    expect((await h.call(null, { method: "GET", url: "/v1/tasks" })).statusCode).toBe(401);
  });

  it("filters by status, scope and resource, and pages with a cursor", async () => {
    expect(ids((await h.call(root, { method: "GET", url: "/v1/tasks?status=failed" })).json())).toEqual(["t-failed"]);
    expect(ids((await h.call(root, { method: "GET", url: "/v1/tasks?tenantId=ta&projectId=p1" })).json())).toEqual(["t-done", "t-running"]);
    expect(ids((await h.call(root, { method: "GET", url: "/v1/tasks?environmentId=e1" })).json())).toEqual(["t-done"]);
    expect(ids((await h.call(root, { method: "GET", url: "/v1/tasks?resource=project:p2" })).json())).toEqual(["t-failed"]);
    expect(ids((await h.call(root, { method: "GET", url: "/v1/tasks?resource=project" })).json())).toHaveLength(5);
    expect((await h.call(root, { method: "GET", url: "/v1/tasks?status=bogus" })).statusCode).toBe(400);

    const first = (await h.call(root, { method: "GET", url: "/v1/tasks?limit=2" })).json();
    expect(ids(first)).toEqual(["t-b", "t-done"]);
    const second = (await h.call(root, { method: "GET", url: `/v1/tasks?limit=2&cursor=${first.nextCursor}` })).json();
    expect(ids(second)).toEqual(["t-failed", "t-running"]);
    const third = (await h.call(root, { method: "GET", url: `/v1/tasks?limit=2&cursor=${second.nextCursor}` })).json();
    expect(ids(third)).toEqual(["t-tenant"]);
    expect(third.nextCursor).toBeNull();
  });
});

describe("GET /v1/tasks/{id}", () => {
  it("answers the task with its steps and an ETag", async () => {
    const response = await h.call(memberP1, { method: "GET", url: "/v1/tasks/t-running" });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers.etag).toBe('W/"3"');
    const task = response.json();
    expect(task).toMatchObject({
      id: "t-running",
      kind: "sentral.test",
      resource: { type: "project", id: "p1" },
      tenantId: "ta",
      projectId: "p1",
      environmentId: null,
      status: "running",
      currentStep: "prepare",
      blocked: null,
      failure: null,
      cancellationRequested: false,
      version: 3,
    });
    expect(task.steps[0]).toEqual({
      name: "prepare", title: "Step prepare", status: "running", attempts: 0, percent: 30, message: "warming up", lastError: null, retryAt: null,
    });
    expect(task.position).toMatch(/^\d+\.\d+$/);
    const again = await h.call(memberP1, { method: "GET", url: "/v1/tasks/t-running", headers: { "if-none-match": 'W/"3"' } });
    expect(again.statusCode).toBe(304);

    const failedTask = (await h.call(root, { method: "GET", url: "/v1/tasks/t-failed" })).json();
    expect(failedTask.failure).toEqual({ step: "one", code: "broken", reason: "disk on fire" });
  });

  it("answers 404 for a task of another tenant or project, exactly as for a missing one", async () => {
    const missing = await h.call(adminB, { method: "GET", url: "/v1/tasks/nope" });
    const hidden = await h.call(adminB, { method: "GET", url: "/v1/tasks/t-running" });
    expect(missing.statusCode).toBe(404);
    expect(hidden.statusCode).toBe(404);
    expect(hidden.json().code).toBe("task_not_found");
    expect(hidden.json().detail).toBe("task t-running does not exist");
    expect((await h.call(memberP2, { method: "GET", url: "/v1/tasks/t-running" })).statusCode).toBe(404);
    expect((await h.call(null, { method: "GET", url: "/v1/tasks/t-running" })).statusCode).toBe(401);
  });

  it("waits for ?minPosition", async () => {
    const { position } = await running.progress("prepare", 60, "more");
    const pos = `${position!.transactionId}.${position!.globalPosition}`;
    const response = await h.call(root, { method: "GET", url: `/v1/tasks/t-running?minPosition=${pos}` });
    expect(response.json().steps[0].percent).toBe(60);
  });
});

describe("POST /v1/tasks/{id}/cancel and /retry", () => {
  it("refuses callers without write access: 404 when they cannot see it, 403 when they can", async () => {
    expect((await h.call(adminB, { method: "POST", url: "/v1/tasks/t-running/cancel", payload: {} })).statusCode).toBe(404);
    // Invisible beats invalid: 404 even with a body the route would refuse.
    expect((await h.call(adminB, { method: "POST", url: "/v1/tasks/t-running/cancel", payload: { bogus: 1 } })).statusCode).toBe(404);
    expect((await h.call(auditorA, { method: "POST", url: "/v1/tasks/t-running/cancel", payload: {} })).statusCode).toBe(403);
    // A member may read a tenant-wide task but not change it.
    expect((await h.call(memberP1, { method: "POST", url: "/v1/tasks/t-tenant/cancel", payload: {} })).statusCode).toBe(403);
  });

  it("cancel answers the task as the read model shows it after the write", async () => {
    const response = await h.call(memberP1, { method: "POST", url: "/v1/tasks/t-running/cancel", payload: { reason: "not needed" } });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers["x-dv-position"]).toMatch(/^\d+\.\d+$/);
    expect(response.json()).toMatchObject({ status: "running", cancellationRequested: true, cancellationReason: "not needed" });
    expect(response.headers.etag).toBe(`W/"${response.json().version}"`);

    // Nothing started: cancelled at once. Without a body.
    const tenant = await h.call(adminA, { method: "POST", url: "/v1/tasks/t-tenant/cancel" });
    expect(tenant.statusCode, tenant.body).toBe(200);
    expect(tenant.json()).toMatchObject({ status: "cancelled", cancellationReason: "cancelled by request" });
  });

  it("a finished task is a 409 task_finished; retrying a running one is 409 task_not_failed", async () => {
    const cancel = await h.call(root, { method: "POST", url: "/v1/tasks/t-done/cancel", payload: {} });
    expect(cancel.statusCode).toBe(409);
    expect(cancel.headers["content-type"]).toContain("application/problem+json");
    expect(cancel.json().code).toBe("task_finished");
    const retryDone = await h.call(root, { method: "POST", url: "/v1/tasks/t-done/retry", payload: {} });
    expect(retryDone.json().code).toBe("task_finished");
    const retryRunning = await h.call(root, { method: "POST", url: "/v1/tasks/t-running/retry", payload: {} });
    expect(retryRunning.statusCode).toBe(409);
    expect(retryRunning.json().code).toBe("task_not_failed");
  });

  it("retry runs a failed task again with a new deadline: the body's, else now + its original duration", async () => {
    const before = Date.now();
    const response = await h.call(adminA, { method: "POST", url: "/v1/tasks/t-failed/retry" });
    expect(response.statusCode, response.body).toBe(200);
    const task = response.json();
    expect(task).toMatchObject({ status: "running", failure: null, currentStep: "one" });
    const deadline = Date.parse(task.deadline);
    expect(deadline).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
    expect(deadline).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);

    await settle(failed, failed.fail("again"));
    const pinned = await h.call(adminA, { method: "POST", url: "/v1/tasks/t-failed/retry", headers: { "if-match": 'W/"1"' }, payload: { deadline: "2099-01-01T00:00:00Z" } });
    expect(pinned.statusCode).toBe(412);
    const explicit = await h.call(adminA, { method: "POST", url: "/v1/tasks/t-failed/retry", payload: { deadline: "2099-01-01T00:00:00Z" } });
    expect(explicit.statusCode, explicit.body).toBe(200);
    expect(explicit.json().deadline).toBe("2099-01-01T00:00:00.000Z");
    const bad = await h.call(adminA, { method: "POST", url: "/v1/tasks/t-failed/retry", payload: { deadline: "tomorrow" } });
    expect(bad.statusCode).toBe(400);
  });
});
