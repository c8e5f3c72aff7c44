import { describe, expect, it } from "vitest";
import { executeTenancyCommand, tenantHandler } from "../../../commands/sentral/tenancy.ts";
import { loadStream } from "../../../commands/pipeline.ts";
import { tenantStreamId } from "../../../domain/sentral/stream.ts";
import { taskDecider, TaskCommandSchema, type TaskEvent } from "../../../domain/task/index.ts";
import { projectBootstrapSaga, projectBootstrapTask } from "../../../sagas/sentral/project-bootstrap.ts";
import { isInlineStep } from "../../../sagas/runtime/types.ts";
import { InMemoryEventStore } from "../../support/in-memory-event-store.ts";

const ctx = { actor: { kind: "user" as const, id: "alice" }, correlationId: "req-1" };

async function world(limits: Record<string, number> = { vcpus: 16, vms: 4 }) {
  const store = new InMemoryEventStore();
  await executeTenancyCommand(store, { type: "CreateTenant", tenantId: "t1", name: "acme" }, ctx);
  await executeTenancyCommand(store, { type: "SetTenantQuota", tenantId: "t1", limits }, ctx);
  await executeTenancyCommand(store, { type: "CreateProject", tenantId: "t1", projectId: "p1", name: "web", bootstrapTaskId: "task-1" }, ctx);
  const events = await store.readStream(tenantStreamId("t1"), { from: 0, limit: 10, direction: "forward" });
  const requested = events.find((e) => e.type === "ProjectBootstrapRequested")!;
  const trigger = { id: requested.id, type: requested.type, streamId: requested.streamId, correlationId: requested.correlationId, occurredAt: requested.occurredAt.toISOString(), data: requested.data };
  const create = TaskCommandSchema.parse(projectBootstrapTask(trigger, new Date("2026-12-01T10:00:00Z")));
  const task = taskDecider.evolve(taskDecider.initialState, (taskDecider.decide(create, taskDecider.initialState) as TaskEvent[])[0]!);
  if (!task.exists) throw new Error("no task");
  return { store, task, create };
}

async function runAllSteps(store: InMemoryEventStore, task: Parameters<typeof projectBootstrapSaga.steps[string]["compensate"] & {}>[0]) {
  const outputs: Record<string, unknown> = {};
  for (const [name, step] of Object.entries(projectBootstrapSaga.steps)) {
    if (!isInlineStep(step)) throw new Error("bootstrap has only inline steps");
    outputs[name] = await step.run(task, { store });
  }
  return outputs;
}

describe("project bootstrap saga", () => {
  it("plans dev, prod and the quota, as a task scoped to the project that carries the request's correlation id", async () => {
    const { create } = await world();
    expect(create).toMatchObject({
      taskId: "task-1",
      kind: "sentral.project-bootstrap",
      scope: { tenantId: "t1", projectId: "p1", environmentId: null },
      steps: [{ name: "create-dev" }, { name: "create-prod" }, { name: "apply-quota" }],
      input: { tenantId: "t1", projectId: "p1", correlationId: "req-1" },
      deadline: "2026-12-01T10:10:00.000Z",
    });
  });

  it("creates dev and prod and copies the tenant's limits to the project; running every step again changes nothing", async () => {
    const { store, task } = await world();
    const first = await runAllSteps(store, task);
    expect(first).toMatchObject({ "create-dev": { created: true }, "create-prod": { created: true }, "apply-quota": { limits: { vcpus: 16, vms: 4 } } });
    const before = (await loadStream(store, tenantStreamId("t1"), tenantHandler.eventSchemas)).events.length;
    const second = await runAllSteps(store, task);
    expect(second).toMatchObject({ "create-dev": { created: false }, "create-prod": { created: false } });
    const after = await loadStream(store, tenantStreamId("t1"), tenantHandler.eventSchemas);
    expect(after.events.length).toBe(before);
    expect(after.events.filter((e) => e.type === "EnvironmentCreated").map((e) => (e.data as { name: string }).name)).toEqual(["dev", "prod"]);
  });

  it("an environment the user created by hand with the same name counts as done", async () => {
    const { store, task } = await world();
    await executeTenancyCommand(store, { type: "CreateEnvironment", tenantId: "t1", projectId: "p1", environmentId: "mine", name: "dev" }, ctx);
    const out = await runAllSteps(store, task);
    expect(out["create-dev"]).toEqual({ environmentId: "mine", created: false });
  });

  it("a tenant without limits leaves the project's quota alone", async () => {
    const { store, task } = await world({});
    const out = await runAllSteps(store, task);
    expect(out["apply-quota"]).toMatchObject({ limits: {} });
    const events = (await loadStream(store, tenantStreamId("t1"), tenantHandler.eventSchemas)).events;
    expect(events.some((e) => e.type === "ProjectQuotaSet")).toBe(false);
  });
});
