import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsLink } from "../../../adapters/nats/connection.ts";
import { consoleSubject, requestVmConsole } from "../../../adapters/workers/hypervisor/console-client.ts";
import { executeCapacityCommand, executeVmCommand } from "../../../commands/maskin/vm/index.ts";
import { SHARED_NATS_URL, testNamespace } from "../nats/support/nats.ts";
import { createApiHarness, type ApiHarness } from "./support/harness.ts";
import { actors } from "./support/test-auth.ts";

/**
 * GET /v1/vms/{id}/console through real NATS request/reply to the VM's
 * hypervisor (a responder on the host's console subject stands in for the
 * worker): offset and maxBytes reach the host the VM is placed on, the
 * answer comes back; no answer is 503 console_unavailable.
 */
describe("REST /v1/vms/{id}/console over NATS", () => {
  let h: ApiHarness;
  let link: NatsLink;
  let nc: NatsConnection;
  const namespace = testNamespace("vmcon");
  const platform = actors.platformAdmin();
  const asked: Array<{ subject: string; body: unknown }> = [];
  let vmId: string;
  let tenant: string;

  beforeAll(async () => {
    link = new NatsLink({ servers: SHARED_NATS_URL, name: "test-vm-console" });
    nc = (await link.ready())!;
    h = await createApiHarness({ vmConsole: (request) => requestVmConsole(nc, namespace, { ...request, timeoutMs: 1_000 }) });
    nc.subscribe(consoleSubject(namespace, "osl1", "hv-a"), {
      callback: (_error, message) => {
        const body = message.json<{ offset: number }>();
        asked.push({ subject: message.subject, body });
        message.respond(JSON.stringify({ text: "login: ", nextOffset: body.offset + 7, size: body.offset + 7 }));
      },
    });
    const created = async (url: string, payload: Record<string, unknown>) => JSON.parse((await h.call(platform, { method: "POST", url, payload })).body).id as string;
    tenant = await created("/v1/tenants", { name: "acme" });
    const project = await created(`/v1/tenants/${tenant}/projects`, { name: "web" });
    const answer = await h.call(platform, {
      method: "POST",
      url: "/v1/vms",
      payload: { name: "con-1", tenantId: tenant, projectId: project, datacenter: "osl1", resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 }, disk: { name: "d", mode: "FailIfNotExist" } },
    });
    expect(answer.statusCode, answer.body).toBe(202);
    const { vmId: id, taskId } = JSON.parse(answer.body) as { vmId: string; taskId: string };
    vmId = id;
    // Placed on hv-a as the create saga would record it.
    const ctx = { actor: { kind: "system", id: "test" }, correlationId: "c-console" } as const;
    const at = new Date().toISOString();
    await executeCapacityCommand(h.db.store, { type: "RegisterHypervisor", hostId: "hv-a", name: "hv-a", datacenter: "osl1", capacity: { vcpus: 4, memoryMiB: 4096, diskGiB: 50 }, at }, ctx);
    await executeVmCommand(h.db.store, { type: "StartPlacement", vmId, taskId, at }, ctx);
    await executeVmCommand(h.db.store, { type: "RecordPlacement", vmId, chosen: { hypervisor: "hv-a", hostId: "hv-a", score: { spreadMembers: 0, utilization: 0.25 } }, rejected: [], taskId, at }, ctx);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const vm = await h.call(platform, { method: "GET", url: `/v1/vms/${vmId}` });
      if (vm.statusCode === 200 && JSON.parse(vm.body).hypervisor) break;
      if (Date.now() > deadline) throw new Error(`the VM never showed its hypervisor: ${vm.body}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }, 60_000);
  afterAll(async () => {
    await h?.dispose();
    await link?.close();
  });

  it("reads the console from the VM's hypervisor with the offset and maxBytes asked", async () => {
    const response = await h.call(actors.tenantAdmin(tenant), { method: "GET", url: `/v1/vms/${vmId}/console?offset=100&maxBytes=4096` });
    expect(response.statusCode, response.body).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ vmId, text: "login: ", offset: 100, nextOffset: 107, size: 107 });
    expect(asked.at(-1)).toEqual({ subject: consoleSubject(namespace, "osl1", "hv-a"), body: { vmId, offset: 100, maxBytes: 4096 } });
  });

  it("answers 503 console_unavailable when the hypervisor does not answer", async () => {
    const silent = await createApiHarness({ vmConsole: (request) => requestVmConsole(nc, testNamespace("vmcon-silent"), { ...request, timeoutMs: 300 }) });
    try {
      const tenantId = JSON.parse((await silent.call(platform, { method: "POST", url: "/v1/tenants", payload: { name: "t" } })).body).id as string;
      const projectId = JSON.parse((await silent.call(platform, { method: "POST", url: `/v1/tenants/${tenantId}/projects`, payload: { name: "p" } })).body).id as string;
      const created = JSON.parse((await silent.call(platform, { method: "POST", url: "/v1/vms", payload: { name: "s", tenantId, projectId, datacenter: "osl1", resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 }, disk: { name: "d", mode: "FailIfNotExist" } } })).body) as { vmId: string; taskId: string };
      const ctx = { actor: { kind: "system", id: "test" }, correlationId: "c-silent" } as const;
      const at = new Date().toISOString();
      await executeVmCommand(silent.db.store, { type: "StartPlacement", vmId: created.vmId, taskId: created.taskId, at }, ctx);
      await executeVmCommand(silent.db.store, { type: "RecordPlacement", vmId: created.vmId, chosen: { hypervisor: "hv-z", hostId: "hv-z", score: { spreadMembers: 0, utilization: 0 } }, rejected: [], taskId: created.taskId, at }, ctx);
      const deadline = Date.now() + 20_000;
      let response;
      for (;;) {
        response = await silent.call(platform, { method: "GET", url: `/v1/vms/${created.vmId}/console` });
        if (response.statusCode !== 404 && response.statusCode !== 409) break;
        if (Date.now() > deadline) throw new Error(`no console answer: ${response.body}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(response.statusCode, response.body).toBe(503);
      expect(JSON.parse(response.body).code).toBe("console_unavailable");
    } finally {
      await silent.dispose();
    }
  }, 60_000);
});
