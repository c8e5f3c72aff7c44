import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { tenantHandler, executeTenancyCommand } from "../../../commands/sentral/tenancy.ts";
import { projectBootstrapTaskId } from "../../../commands/sentral/bootstrap.ts";
import { loadStream } from "../../../commands/pipeline.ts";
import { fold } from "../../../domain/shared/decider.ts";
import { tenancyDecider } from "../../../domain/sentral/decider.ts";
import { tenantStreamId } from "../../../domain/sentral/stream.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { projectBootstrapSaga, type ProjectBootstrapDeps } from "../../../sagas/sentral/project-bootstrap.ts";
import { createSagaHarness, USER, type SagaHarness } from "./support.ts";

/**
 * Issue 4's first saga end to end: a project created with a bootstrap request
 * -> the log -> the relay -> the trigger's consumer creates the task -> the
 * engine runs its inline steps -> dev, prod and the tenant's quota exist, and
 * the task succeeded. A business rule refusing a step fails the task at once.
 */
describe("project bootstrap saga over the real relay and runtime", () => {
  let h: SagaHarness;
  let runtime: SagaRuntime<ProjectBootstrapDeps>;

  beforeAll(async () => {
    h = await createSagaHarness("boot");
    runtime = new SagaRuntime({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
      sagas: [projectBootstrapSaga],
      deps: { store: h.store },
      ackWaitMs: 5_000,
    });
    runtime.start();
  });
  afterAll(async () => {
    await runtime?.stop();
    await h?.dispose();
  });

  const ctx = { actor: USER, correlationId: "req-boot" };
  /** The trigger creates the task once the request reaches it over NATS. */
  const created = async (taskId: string) => {
    const deadline = Date.now() + 30_000;
    while (!(await h.task(taskId).then(() => true, () => false))) {
      if (Date.now() > deadline) throw new Error(`the trigger never created task ${taskId}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const tenant = async (tenantId: string) =>
    fold(tenancyDecider, (await loadStream(h.store, tenantStreamId(tenantId), tenantHandler.eventSchemas)).events as never[]);

  it("creates dev and prod and applies the tenant's quota as a task that succeeds, once per request", async () => {
    await executeTenancyCommand(h.store, { type: "CreateTenant", tenantId: "acme", name: "acme" }, ctx);
    await executeTenancyCommand(h.store, { type: "SetTenantQuota", tenantId: "acme", limits: { vcpus: 8 } }, ctx);
    const taskId = projectBootstrapTaskId("acme", "web");
    await executeTenancyCommand(h.store, { type: "CreateProject", tenantId: "acme", projectId: "web", name: "web", bootstrapTaskId: taskId }, ctx);

    await created(taskId);
    const [task] = await h.waitFor([taskId], (t) => t.status === "succeeded", 30_000, "the bootstrap task");
    expect(task!.steps.map((s) => [s.name, s.status])).toEqual([
      ["create-dev", "completed"],
      ["create-prod", "completed"],
      ["apply-quota", "completed"],
    ]);
    const state = await tenant("acme");
    if (state.status === "absent") throw new Error("no tenant");
    const project = state.projects.get("web")!;
    expect([...project.environments.values()].map((e) => e.name).sort()).toEqual(["dev", "prod"]);
    expect(project.limits).toEqual({ vcpus: 8 });
    // The task carries the request's correlation id into every event it caused.
    const events = await h.store.readStream(tenantStreamId("acme"), { from: 0, limit: 100, direction: "forward" });
    expect(events.filter((e) => e.type === "EnvironmentCreated").every((e) => e.correlationId === "req-boot" && e.causationId === taskId)).toBe(true);
  });

  it("a step a business rule refuses fails the task with the rule's words instead of retrying", async () => {
    await executeTenancyCommand(h.store, { type: "CreateTenant", tenantId: "gone", name: "gone" }, ctx);
    const taskId = projectBootstrapTaskId("gone", "app");
    await executeTenancyCommand(h.store, { type: "CreateProject", tenantId: "gone", projectId: "app", name: "app", bootstrapTaskId: taskId }, ctx);
    await executeTenancyCommand(h.store, { type: "ArchiveProject", tenantId: "gone", projectId: "app" }, ctx);
    await created(taskId);
    const [task] = await h.waitFor([taskId], (t) => t.status === "failed" || t.status === "succeeded", 30_000, "the bootstrap task");
    // The archive lands long before the request crosses the relay and NATS to the saga.
    expect(task!.status).toBe("failed");
    expect(task!.failure).toMatchObject({ code: "project_archived" });
    expect(task!.failure!.reason).toMatch(/^step create-dev: project app is archived/);
    expect(task!.steps[0]!.attempts).toBe(0);
  });
});
