import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiHarness, type ApiHarness } from "./support/harness.ts";
import { actors } from "./support/test-auth.ts";
import { vmMac } from "../../../domain/maskin/vm/index.ts";

/**
 * REST /v1/vms over a real database and read models (no saga runtime here:
 * the create task is only recorded; the sagas have their own test). Quota,
 * the 202 answer, the VM's view, explain, scoping and state refusals.
 */
describe("REST /v1/vms", () => {
  let h: ApiHarness;
  const platform = actors.platformAdmin();
  let tenant: string;
  let web: string;
  let ops: string;

  const create = async (url: string, payload: Record<string, unknown>) => {
    const response = await h.call(platform, { method: "POST", url, payload });
    expect(response.statusCode, response.body).toBe(201);
    return JSON.parse(response.body).id as string;
  };
  const body = (projectId: string, extra: Record<string, unknown> = {}) => ({
    name: "vm-a",
    tenantId: tenant,
    projectId,
    datacenter: "osl1",
    resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 10 },
    disk: { name: "root-disk", mode: "CreateIfNotExist", template: { image: { name: "debian", version: "12" }, sizeGiB: 10, storageClass: "local" } },
    sshAuthorizedKeys: ["ssh-ed25519 AAAAC3 me@example"],
    ...extra,
  });
  const readable = async (vmId: string) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const response = await h.call(platform, { method: "GET", url: `/v1/vms/${vmId}` });
      if (response.statusCode === 200) return JSON.parse(response.body);
      if (Date.now() > deadline) throw new Error(`VM ${vmId} never readable: ${response.statusCode} ${response.body}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  beforeAll(async () => {
    h = await createApiHarness();
    tenant = await create("/v1/tenants", { name: "acme" });
    web = await create(`/v1/tenants/${tenant}/projects`, { name: "web" });
    ops = await create(`/v1/tenants/${tenant}/projects`, { name: "ops" });
    const quota = await h.call(platform, { method: "PUT", url: `/v1/tenants/${tenant}/projects/${web}/quota`, payload: { limits: { vms: 2, vcpus: 3 } } });
    expect([200, 202], quota.body).toContain(quota.statusCode);
  });
  afterAll(async () => {
    await h?.dispose();
  });

  it("creates a VM: 202 with the task in X-Dv-Task and the VM in Location; the VM reads back requested with its NIC's MAC", async () => {
    const response = await h.call(actors.member(tenant, web), { method: "POST", url: "/v1/vms", payload: body(web) });
    expect(response.statusCode, response.body).toBe(202);
    const answer = JSON.parse(response.body);
    expect(response.headers["x-dv-task"]).toBe(answer.taskId);
    expect(response.headers.location).toBe(`/v1/vms/${answer.vmId}`);
    expect(answer.kind).toBe("maskin.vm-create");
    const task = await h.call(platform, { method: "GET", url: `/v1/tasks/${answer.taskId}` });
    expect(task.statusCode, task.body).toBe(200);
    expect(JSON.parse(task.body)).toMatchObject({ kind: "maskin.vm-create", resource: { type: "vm", id: answer.vmId } });

    const vm = await readable(answer.vmId);
    expect(vm).toMatchObject({ vmId: answer.vmId, name: "vm-a", projectId: web, state: "requested", desired: "running", hypervisor: null, sshPorts: [], drift: null, taskId: answer.taskId });
    expect(vm.nics).toHaveLength(1);
    expect(vm.nics[0]).toEqual({ index: 0, network: "user", mac: vmMac(answer.vmId, 0) });
    const explain = await h.call(platform, { method: "GET", url: `/v1/vms/${answer.vmId}/explain` });
    expect(JSON.parse(explain.body)).toEqual({ vmId: answer.vmId, outcome: "pending", rejected: [] });
  });

  it("refuses a VM over the project's quota with 422 quota_exceeded naming the limit, and records nothing", async () => {
    const before = await h.written();
    const response = await h.call(platform, { method: "POST", url: "/v1/vms", payload: body(web, { name: "vm-b" }) });
    expect(response.statusCode, response.body).toBe(422);
    expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
    const problem = JSON.parse(response.body);
    expect(problem.code).toBe("quota_exceeded");
    expect(problem.details).toMatchObject({ limit: "vcpus", limitValue: 3, usage: 2, requested: 2 });
    expect(problem.detail).toContain("vcpus");
    expect((await h.written()).count).toBe(before.count);
    // One vCPU still fits.
    const fits = await h.call(platform, { method: "POST", url: "/v1/vms", payload: body(web, { name: "vm-c", resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 } }) });
    expect(fits.statusCode, fits.body).toBe(202);
    await readable(JSON.parse(fits.body).vmId);
    // Now the VM count is at its limit (2).
    const third = await h.call(platform, { method: "POST", url: "/v1/vms", payload: body(web, { name: "vm-d", resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 } }) });
    expect(third.statusCode, third.body).toBe(422);
    expect(JSON.parse(third.body).details).toMatchObject({ limit: "vms", limitValue: 2 });
  });

  it("lists only what the caller can see: a member of another project sees none of web's VMs", async () => {
    const other = await h.call(platform, { method: "POST", url: "/v1/vms", payload: body(ops, { name: "ops-1" }) });
    expect(other.statusCode, other.body).toBe(202);
    const opsVm = JSON.parse(other.body).vmId as string;
    await readable(opsVm);
    const asMember = await h.call(actors.member(tenant, ops), { method: "GET", url: "/v1/vms" });
    expect(JSON.parse(asMember.body).items.map((v: { vmId: string }) => v.vmId)).toEqual([opsVm]);
    const asAdmin = await h.call(actors.tenantAdmin(tenant), { method: "GET", url: "/v1/vms" });
    expect(JSON.parse(asAdmin.body).items).toHaveLength(3);
    const stranger = await h.call(actors.member(tenant, web), { method: "GET", url: `/v1/vms/${opsVm}` });
    expect(stranger.statusCode).toBe(404);
    expect(JSON.parse(stranger.body).code).toBe("vm_not_found");
  });

  it("refuses power on a VM that is not running or stopped (409 vm_invalid_state); delete starts a task", async () => {
    const list = JSON.parse((await h.call(platform, { method: "GET", url: `/v1/vms?projectId=${web}` })).body).items as Array<{ vmId: string }>;
    const vmId = list[0]!.vmId;
    const stop = await h.call(platform, { method: "POST", url: `/v1/vms/${vmId}/stop`, payload: {} });
    expect(stop.statusCode, stop.body).toBe(409);
    expect(JSON.parse(stop.body).code).toBe("vm_invalid_state");
    const console = await h.call(platform, { method: "GET", url: `/v1/vms/${vmId}/console` });
    expect(console.statusCode).toBe(409);
    expect(JSON.parse(console.body).code).toBe("vm_not_placed");
    const removed = await h.call(platform, { method: "DELETE", url: `/v1/vms/${vmId}` });
    expect(removed.statusCode, removed.body).toBe(202);
    expect(JSON.parse(removed.body)).toMatchObject({ kind: "maskin.vm-delete", vmId });
  });

  it("publishes the routes in the OpenAPI document", async () => {
    const doc = JSON.parse((await h.call(null, { method: "GET", url: "/v1/openapi.json" })).body);
    for (const path of ["/v1/vms", "/v1/vms/{vmId}", "/v1/vms/{vmId}/explain", "/v1/vms/{vmId}/console", "/v1/vms/{vmId}/stop"]) expect(doc.paths[path], path).toBeDefined();
    expect(doc.paths["/v1/vms"].post.operationId).toBe("createVm");
  });
});
