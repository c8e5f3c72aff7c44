import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectBootstrapTaskId } from "../../../commands/sentral/bootstrap.ts";
import { tenantStreamId } from "../../../domain/sentral/stream.ts";
import { createApiHarness, type ApiHarness } from "./support/harness.ts";
import { actors } from "./support/test-auth.ts";

/** POST a project with withDefaultEnvironments: the bootstrap request is recorded and its task named. */
describe("creating a project with default environments", () => {
  let h: ApiHarness;
  const admin = actors.platformAdmin();

  beforeAll(async () => {
    h = await createApiHarness();
  });
  afterAll(async () => {
    await h?.dispose();
  });

  it("records ProjectBootstrapRequested with the project and names the same task when the create is repeated", async () => {
    const tenant = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "boot" } });
    const tenantId = JSON.parse(tenant.body).id as string;
    const create = () =>
      h.call(admin, { method: "POST", url: `/v1/tenants/${tenantId}/projects`, payload: { id: "web", name: "web", withDefaultEnvironments: true } });

    const first = await create();
    expect(first.statusCode, first.body).toBe(201);
    const taskId = projectBootstrapTaskId(tenantId, "web");
    expect(first.headers["x-dv-task"]).toBe(taskId);

    const again = await create();
    expect(again.statusCode).toBe(200);
    expect(again.headers["x-dv-task"]).toBe(taskId);

    const events = await h.db.store.readStream(tenantStreamId(tenantId), { from: 0, limit: 10, direction: "forward" });
    expect(events.map((e) => e.type)).toEqual(["TenantCreated", "ProjectCreated", "ProjectBootstrapRequested"]);
    expect(events[2]!.data).toEqual({ tenantId, projectId: "web", taskId, environments: ["dev", "prod"] });
  });

  it("a plain create names no task", async () => {
    const tenant = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "plain" } });
    const tenantId = JSON.parse(tenant.body).id as string;
    const created = await h.call(admin, { method: "POST", url: `/v1/tenants/${tenantId}/projects`, payload: { name: "web" } });
    expect(created.statusCode).toBe(201);
    expect(created.headers["x-dv-task"]).toBeUndefined();
  });
});
