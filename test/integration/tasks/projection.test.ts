import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allProjections, ProjectionRunner, tasksProjection } from "../../../projections/index.ts";
import type { TaskTables } from "../../../projections/sentral/tasks.ts";
import { allReadable, createHarness, until, type ProjectionHarness } from "../projections/support.ts";
import { TaskDriver } from "./support.ts";

let h: ProjectionHarness;
let runner: ProjectionRunner;
let db: Kysely<TaskTables>;

beforeAll(async () => {
  h = await createHarness();
  db = h.db.withSchema("tasks") as Kysely<TaskTables>;
  runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
  await runner.start();
});
afterAll(async () => {
  await runner?.stop();
  await h?.dispose();
});

const row = (taskId: string) => db.selectFrom("tasks").selectAll().where("task_id", "=", taskId).executeTakeFirst();

async function caughtUp(position: { transactionId: bigint; globalPosition: bigint } | null) {
  if (position) await runner.waitForPosition("tasks", position, 20_000);
}

describe("tasks projection", () => {
  it("is registered in allProjections", () => {
    expect(allProjections).toContain(tasksProjection);
  });

  it("mirrors the aggregate: steps, progress, attempts, blocked, then success", async () => {
    const t = new TaskDriver(h.store, "task-a", { tenantId: "t1", projectId: "p1", environmentId: null });
    const created = await t.create();
    await caughtUp(created.position);
    let r = await row("task-a");
    expect(r).toMatchObject({
      kind: "sentral.test",
      title: "test task task-a",
      resource_type: "project",
      resource_id: "p1",
      tenant_id: "t1",
      project_id: "p1",
      environment_id: null,
      status: "pending",
      current_step: null,
      blocked: null,
      failure: null,
      cancellation_reason: null,
      max_attempts: 3,
      version: 0,
      duration_ms: "3600000",
    });
    expect(r!.steps.map((s) => [s.name, s.status])).toEqual([["prepare", "pending"], ["create-prod", "pending"], ["finish", "pending"]]);
    expect(r!.position).toMatch(/^\d+\.\d+$/);

    await t.start("prepare");
    await t.complete("prepare");
    await t.start("create-prod");
    await t.requestWork("create-prod");
    await t.attemptFailed("create-prod", "task-a:create-prod:1");
    await t.requestWork("create-prod");
    await t.progress("create-prod", 40, "copying");
    const blocked = await t.block("worker:sentral/dc1", "no heartbeat from sentral in dc1");
    await caughtUp(blocked.position);
    r = await row("task-a");
    expect(r!.status).toBe("blocked");
    expect(r!.current_step).toBe("create-prod");
    expect(r!.blocked).toMatchObject({ step: "create-prod", dependency: "worker:sentral/dc1", kind: "hard", reason: "no heartbeat from sentral in dc1" });
    const step = r!.steps.find((s) => s.name === "create-prod")!;
    expect(step).toMatchObject({ status: "running", attempts: 2, percent: 40, message: "copying", lastError: { code: "worker_error", message: "worker said no" } });
    expect(r!.version).toBe(blocked.version);
    expect(r!.updated_at.getTime()).toBeGreaterThan(r!.created_at.getTime());

    await t.unblock("worker:sentral/dc1");
    await t.complete("create-prod");
    await t.start("finish");
    await t.complete("finish");
    const done = await t.succeed();
    await caughtUp(done.position);
    r = await row("task-a");
    expect(r!.status).toBe("succeeded");
    expect(r!.current_step).toBeNull();
    expect(r!.blocked).toBeNull();
    expect(r!.steps.every((s) => s.status === "completed" && s.percent === 100)).toBe(true);
  });

  it("records failure, retry with a new deadline, and cancellation", async () => {
    const f = new TaskDriver(h.store, "task-f", { tenantId: "t1", projectId: null, environmentId: null });
    await f.create(["one", "two"]);
    await f.start("one");
    await f.requestWork("one");
    const failed = await f.attemptFailed("one", "task-f:one:1", false, "bad input");
    await caughtUp(failed.position);
    let r = await row("task-f");
    expect(r!.status).toBe("failed");
    expect(r!.failure).toEqual({ step: "one", code: "worker_error", reason: "bad input" });
    expect(r!.current_step).toBe("one");

    const retried = await f.run({ type: "RetryTask", deadline: "2030-01-01T00:00:00.000Z" });
    await caughtUp(retried.position);
    r = await row("task-f");
    expect(r!.status).toBe("running");
    expect(r!.failure).toBeNull();
    expect(r!.deadline.toISOString()).toBe("2030-01-01T00:00:00.000Z");

    const c = new TaskDriver(h.store, "task-c", { tenantId: "t2", projectId: "p9", environmentId: "e9" });
    await c.create(["only"]);
    await c.start("only");
    const requested = await c.run({ type: "RequestCancellation", reason: "changed my mind" });
    await caughtUp(requested.position);
    r = await row("task-c");
    expect(r!.status).toBe("running");
    expect(r!.cancellation_reason).toBe("changed my mind");
    const confirmed = await c.run({ type: "ConfirmCancellation" });
    await caughtUp(confirmed.position);
    r = await row("task-c");
    expect(r!.status).toBe("cancelled");
    expect(r!.environment_id).toBe("e9");
  });

  it("folds a whole history in one batch exactly like event by event (rebuild equals the live model)", async () => {
    // Many tasks, interleaved, so the rebuild's bigger batches fold several events per task.
    const drivers = Array.from({ length: 12 }, (_, i) => new TaskDriver(h.store, `bulk-${i}`, { tenantId: `t${i % 3}`, projectId: i % 2 ? "p1" : null, environmentId: null }));
    for (const d of drivers) await d.create(["a", "b"]);
    for (const [i, d] of drivers.entries()) {
      await d.start("a");
      if (i % 4 === 0) await d.block("dep", "waiting");
      if (i % 3 === 0) await d.fail("nope");
      else if (i % 3 === 1) await d.run({ type: "RequestCancellation", reason: "stop" });
      else {
        await d.complete("a");
        await d.start("b");
        await d.complete("b");
        await d.succeed();
      }
    }
    await allReadable(h);
    await until(async () => (await runner.status()).find((s) => s.name === "tasks")?.lagEvents === 0);
    const result = await runner.rebuild("tasks", { requireEqual: true });
    expect(result.swapped).toBe(true);
    expect(result.checksums?.equal).toBe(true);
    const served = await runner.checksum("tasks");
    expect(served.digest).toBe(result.checksums!.rebuild.digest);
    const rows = await db.selectFrom("tasks").select(["task_id", "status"]).where("task_id", "like", "bulk-%").orderBy("task_id").execute();
    const count = (status: string) => rows.filter((r) => r.status === status).length;
    expect(rows).toHaveLength(12);
    expect([count("failed"), count("succeeded"), count("running"), count("blocked")]).toEqual([4, 4, 3, 1]);
  });
});
