import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { v7 as uuidv7 } from "uuid";
import { CommandValidationError } from "../../../commands/errors.ts";
import { executeTenancyCommand } from "../../../commands/sentral/tenancy.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import { ProjectionRunner, tenancyProjection } from "../../../projections/index.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";

/** The whole write path on the real store: command -> decider -> Postgres -> read model. */
describe("tenancy commands against the Postgres event store", () => {
  let harness: ProjectionHarness;
  let runner: ProjectionRunner;
  const context = { actor: { kind: "user", id: "ada" } as const, correlationId: "corr-1", scope: { tenantId: "platform" } };

  beforeAll(async () => {
    harness = await createHarness();
    runner = new ProjectionRunner({ pool: harness.pool, store: harness.store, projections: [tenancyProjection] });
    await runner.setup();
    await runner.start();
  });
  afterAll(async () => {
    await runner.stop();
    await harness.dispose();
  });

  it("creates tenant, project and environment and serves them from the read model", async () => {
    const tenantId = uuidv7();
    const projectId = uuidv7();
    const environmentId = uuidv7();
    await executeTenancyCommand(harness.store, { type: "CreateTenant", tenantId, name: "acme" }, context);
    await executeTenancyCommand(harness.store, { type: "CreateProject", tenantId, projectId, name: "web" }, context);
    const last = await executeTenancyCommand(harness.store, { type: "CreateEnvironment", tenantId, projectId, environmentId, name: "prod" }, context);
    expect(last.version).toBe(2);

    await runner.waitForPosition("tenancy", last.position!, 10_000);
    const db = harness.db.withSchema(tenancyProjection.name);
    expect(await db.selectFrom("tenants").select(["tenant_id", "name", "status"]).where("tenant_id", "=", tenantId).execute())
      .toEqual([{ tenant_id: tenantId, name: "acme", status: "active" }]);
    expect(await db.selectFrom("environments").select(["environment_id", "name"]).where("tenant_id", "=", tenantId).execute())
      .toEqual([{ environment_id: environmentId, name: "prod" }]);

    const [created] = await harness.store.readStream(`tenant-${tenantId}`);
    expect(created).toMatchObject({ type: "TenantCreated", correlationId: "corr-1", actor: { kind: "user", id: "ada" } });
  });

  it("lets exactly one of two racing CreateProject commands with the same name win", async () => {
    const tenantId = uuidv7();
    await executeTenancyCommand(harness.store, { type: "CreateTenant", tenantId, name: "race" }, context);
    const outcomes = await Promise.allSettled(
      [uuidv7(), uuidv7()].map((projectId) =>
        executeTenancyCommand(harness.store, { type: "CreateProject", tenantId, projectId, name: "same" }, context)),
    );
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    const rejected = outcomes.find((o) => o.status === "rejected") as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(DomainError);
    expect(rejected.reason.code).toBe("project_name_taken");
    expect((await harness.store.readStream(`tenant-${tenantId}`)).map((e) => e.type)).toEqual(["TenantCreated", "ProjectCreated"]);
  });

  it("rejects a malformed command listing every bad field, and appends nothing", async () => {
    const head = await harness.store.headPosition();
    const error = await executeTenancyCommand(harness.store, { type: "CreateProject", tenantId: "", projectId: 7, name: "Not_A-Label-" }, context)
      .catch((e) => e);
    expect(error).toBeInstanceOf(CommandValidationError);
    expect((error as CommandValidationError).issues.map((i) => i.path).sort()).toEqual(["name", "projectId", "tenantId"]);
    expect(await harness.store.headPosition()).toEqual(head);
  });
});
