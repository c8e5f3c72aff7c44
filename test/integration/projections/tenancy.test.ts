import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NewEvent } from "../../../adapters/eventstore/port.ts";
import { tenantStreamId } from "../../../domain/sentral/stream.ts";
import { allProjections, tenancyProjection } from "../../../projections/index.ts";
import { ProjectionRunner } from "../../../projections/runner.ts";
import { quotaLimitsOf, type TenancyTables } from "../../../projections/sentral/tenancy.ts";
import { allReadable, createHarness, until, type ProjectionHarness } from "./support.ts";
import type { Kysely } from "kysely";

let h: ProjectionHarness;
let runner: ProjectionRunner;
let db: Kysely<TenancyTables>;

beforeAll(async () => {
  h = await createHarness();
  db = h.db.withSchema("tenancy") as Kysely<TenancyTables>;
  runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
  await runner.start();
});
afterAll(async () => {
  await runner?.stop();
  await h?.dispose();
});

const t = (minute: number) => new Date(Date.UTC(2026, 2, 1, 12, minute));

function tenancy(tenantId: string, type: string, data: Record<string, unknown>, minute: number): NewEvent {
  return {
    type,
    schemaVersion: 1,
    data: { tenantId, ...data },
    occurredAt: t(minute),
    actor: { kind: "user", id: "ops" },
    scope: { tenantId, ...(typeof data.projectId === "string" ? { projectId: data.projectId } : {}) },
  };
}

async function append(tenantId: string, events: NewEvent[]) {
  return h.store.append(tenantStreamId(tenantId), events, { expectedVersion: "any" });
}

describe("tenancy projection", () => {
  it("is registered in allProjections", () => {
    expect(allProjections).toContain(tenancyProjection);
  });

  it("maps every tenancy event to the rows the API serves", async () => {
    await append("t1", [
      tenancy("t1", "TenantCreated", { name: "acme", displayName: "Acme AS" }, 0), // 0
      tenancy("t1", "TenantRenamed", { name: "acme-no", displayName: null }, 1), // 1
      tenancy("t1", "ProjectCreated", { projectId: "p1", name: "web", description: "frontend" }, 2), // 2
      tenancy("t1", "EnvironmentCreated", { projectId: "p1", environmentId: "e1", name: "prod" }, 3), // 3
      tenancy("t1", "EnvironmentCreated", { projectId: "p1", environmentId: "e2", name: "staging" }, 4), // 4
    ]);
    await append("t2", [
      tenancy("t2", "TenantCreated", { name: "globex", displayName: null }, 5),
      // Same opaque project id as t1's: ids are unique per tenant only.
      tenancy("t2", "ProjectCreated", { projectId: "p1", name: "web", description: null }, 6),
    ]);
    await append("t1", [
      tenancy("t1", "TenantQuotaSet", { limits: { vcpus: 64, memoryMiB: 262144 } }, 7), // 5
      tenancy("t1", "ProjectQuotaSet", { projectId: "p1", limits: { vms: 10, memoryMiB: 5_000_000_000 } }, 8), // 6
      tenancy("t1", "TenantQuotaSet", { limits: { vcpus: null, hosts: 2 } }, 9), // 7: clear vcpus, keep memory
      tenancy("t1", "EnvironmentArchived", { projectId: "p1", environmentId: "e2" }, 10), // 8
      tenancy("t1", "TenantSuspended", { reason: "unpaid" }, 11), // 9
      tenancy("t1", "TenantResumed", {}, 12), // 10
      tenancy("t1", "TenantSuspended", { reason: "abuse" }, 13), // 11
      tenancy("t1", "ProjectCreated", { projectId: "p2", name: "old", description: null }, 14), // 12
    ]);
    const last = await append("t1", [tenancy("t1", "ProjectArchived", { projectId: "p2" }, 15)]); // 13

    await runner.waitForPosition("tenancy", last.position, 30_000);

    expect(await db.selectFrom("tenants").selectAll().orderBy("tenant_id").execute()).toEqual([
      {
        tenant_id: "t1",
        name: "acme-no",
        display_name: null,
        status: "suspended",
        suspended_reason: "abuse",
        created_at: t(0),
        updated_at: t(13),
        version: 11,
        stream_version: 13,
      },
      {
        tenant_id: "t2",
        name: "globex",
        display_name: null,
        status: "active",
        suspended_reason: null,
        created_at: t(5),
        updated_at: t(5),
        version: 0,
        stream_version: 1,
      },
    ]);

    expect(await db.selectFrom("projects").selectAll().orderBy("tenant_id").orderBy("project_id").execute()).toEqual([
      { tenant_id: "t1", project_id: "p1", name: "web", description: "frontend", status: "active", created_at: t(2), updated_at: t(2), version: 2 },
      { tenant_id: "t1", project_id: "p2", name: "old", description: null, status: "archived", created_at: t(14), updated_at: t(15), version: 13 },
      { tenant_id: "t2", project_id: "p1", name: "web", description: null, status: "active", created_at: t(6), updated_at: t(6), version: 1 },
    ]);

    expect(await db.selectFrom("environments").selectAll().orderBy("environment_id").execute()).toEqual([
      { tenant_id: "t1", project_id: "p1", environment_id: "e1", name: "prod", status: "active", created_at: t(3), updated_at: t(3), version: 3 },
      { tenant_id: "t1", project_id: "p1", environment_id: "e2", name: "staging", status: "archived", created_at: t(4), updated_at: t(10), version: 8 },
    ]);

    const quotas = await db.selectFrom("quotas").selectAll().orderBy("scope_kind").orderBy("scope_id").execute();
    expect(quotas).toEqual([
      {
        tenant_id: "t1",
        scope_kind: "project",
        scope_id: "p1",
        project_id: "p1",
        vcpus: null,
        memory_mib: "5000000000",
        vms: "10",
        hosts: null,
        networks: null,
        buckets: null,
        created_at: t(8),
        updated_at: t(8),
        version: 6,
      },
      {
        tenant_id: "t1",
        scope_kind: "tenant",
        scope_id: "t1",
        project_id: null,
        vcpus: null,
        memory_mib: "262144",
        vms: null,
        hosts: "2",
        networks: null,
        buckets: null,
        created_at: t(7),
        updated_at: t(9),
        version: 7,
      },
    ]);
    expect(quotaLimitsOf(quotas[0]!)).toEqual({ memoryMiB: 5_000_000_000, vms: 10 });
    expect(quotaLimitsOf(quotas[1]!)).toEqual({ memoryMiB: 262144, hosts: 2 });
  });

  it("rebuilds to a model identical to the served one", async () => {
    await allReadable(h);
    const result = await runner.rebuild("tenancy");
    expect(result.swapped).toBe(true);
    expect(result.checksums?.equal).toBe(true);
    expect(result.checksums!.live.tables.map((x) => [x.table, x.rows])).toEqual([
      ["environments", 2],
      ["projects", 3],
      ["quotas", 2],
      ["tenants", 2],
    ]);
    const served = await runner.checksum("tenancy");
    expect(served.digest).toBe(result.checksums!.rebuild.digest);
  });

  it("stops at an event version it cannot read instead of guessing (an upcaster is missing)", async () => {
    await append("t3", [{ ...tenancy("t3", "TenantCreated", { name: "initech", displayName: null }, 20), schemaVersion: 2 }]);
    await until(async () => (await runner.status()).find((s) => s.name === "tenancy")!.state === "failed");
    const status = (await runner.status()).find((s) => s.name === "tenancy")!;
    expect(status.lastError).toMatch(/schema version 2.*upcaster missing/);
    expect(await db.selectFrom("tenants").select("tenant_id").where("tenant_id", "=", "t3").execute()).toEqual([]);
  });
});
