import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Kysely } from "kysely";
import { executeIdentityCommand } from "../../../commands/identitet/grants.ts";
import type { Role } from "../../../domain/identitet/roles.ts";
import { allProjections, grantsProjection, ProjectionRunner } from "../../../projections/index.ts";
import { listGrants, principalOf, rolesOf, type GrantsTables } from "../../../projections/identitet/grants.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";

let h: ProjectionHarness;
let runner: ProjectionRunner;
let db: Kysely<GrantsTables>;
const context = { actor: { kind: "user", id: "root" } as const, correlationId: "c-1" };

beforeAll(async () => {
  h = await createHarness();
  db = h.db.withSchema("grants") as Kysely<GrantsTables>;
  runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
  await runner.start();
});
afterAll(async () => {
  await runner?.stop();
  await h?.dispose();
});

async function run(input: Record<string, unknown>) {
  const result = await executeIdentityCommand(h.store, input, context);
  if (result.position) await runner.waitForPosition(grantsProjection.name, result.position, 20_000);
  return result;
}
const grant = (subject: string, role: Role, subjectKind = "user") => run({ type: "GrantRole", subject, subjectKind, role });
const revoke = (subject: string, role: Role) => run({ type: "RevokeRole", subject, role });

describe("grants projection", () => {
  it("is registered in allProjections, in its own schema (not the identitet schema of migration 0003)", () => {
    expect(allProjections).toContain(grantsProjection);
    expect(grantsProjection.name).toBe("grants");
  });

  it("keeps one row per held role, deletes revoked ones, and remembers the subject and its kind", async () => {
    const first = await grant("ada", { role: "tenant-admin", tenantId: "t1" });
    await grant("ada", { role: "project-member", tenantId: "t2", projectId: "p1" });
    await grant("ada", { role: "auditor" });
    const again = await grant("ada", { role: "auditor" });
    expect(again.events).toEqual([]);
    await revoke("ada", { role: "tenant-admin", tenantId: "t1" });

    const rows = await db.selectFrom("role_grants").selectAll().where("subject", "=", "ada").orderBy("role_key").execute();
    expect(rows.map((r) => [r.role, r.tenant_id, r.project_id, r.subject_kind, r.granted_by, r.version])).toEqual([
      ["auditor", null, null, "user", "user:root", 2],
      ["project-member", "t2", "p1", "user", "user:root", 1],
    ]);
    expect(rows[0]!.granted_at).toBeInstanceOf(Date);

    const subject = await db.selectFrom("subjects").selectAll().where("subject", "=", "ada").executeTakeFirstOrThrow();
    expect(subject).toMatchObject({ subject_kind: "user", version: 3 });
    expect(subject.created_at).toEqual((await h.store.readStream("identity-ada"))[0]!.occurredAt);
    expect(first.streamId).toBe("identity-ada");

    expect(await rolesOf(h.db, "ada")).toEqual([{ role: "auditor" }, { role: "project-member", tenantId: "t2", projectId: "p1" }]);
    expect(await principalOf(h.db, "ada")).toEqual({ subject: "ada", kind: "user", roles: await rolesOf(h.db, "ada") });
  });

  it("answers [] and kind null for an unknown subject, and keeps the kind of one whose roles were all revoked", async () => {
    expect(await rolesOf(h.db, "nobody")).toEqual([]);
    expect(await principalOf(h.db, "nobody")).toEqual({ subject: "nobody", kind: null, roles: [] });
    await grant("svc-gone", { role: "auditor", tenantId: "t1" }, "service");
    await revoke("svc-gone", { role: "auditor", tenantId: "t1" });
    expect(await principalOf(h.db, "svc-gone")).toEqual({ subject: "svc-gone", kind: "service", roles: [] });
  });

  it("lists grants filtered by visibility in SQL, by subject and tenant, in keyset pages", async () => {
    await grant("bob", { role: "tenant-admin", tenantId: "t1" });
    await grant("cy", { role: "project-member", tenantId: "t1", projectId: "p9" });
    await grant("dee", { role: "platform-admin" });

    const t1 = await listGrants(h.db, { visibleTenants: ["t1"], limit: 100 });
    expect(t1.map((r) => [r.subject, r.role])).toEqual([
      ["bob", "tenant-admin"],
      ["cy", "project-member"],
    ]);
    expect(await listGrants(h.db, { visibleTenants: [], limit: 100 })).toEqual([]);
    const all = await listGrants(h.db, { visibleTenants: "all", limit: 100 });
    expect(all.map((r) => r.subject)).toContain("dee");
    expect((await listGrants(h.db, { visibleTenants: "all", subject: "ada", limit: 100 })).map((r) => r.role)).toEqual(["auditor", "project-member"]);
    expect((await listGrants(h.db, { visibleTenants: "all", tenantId: "t2", limit: 100 })).map((r) => r.subject)).toEqual(["ada"]);

    // Walk every grant two at a time: each exactly once, in order.
    const walked: string[] = [];
    let after: { subject: string; roleKey: string } | undefined;
    for (;;) {
      const page = await listGrants(h.db, { visibleTenants: "all", limit: 2, ...(after ? { after } : {}) });
      walked.push(...page.map((r) => `${r.subject} ${r.role_key}`));
      if (page.length < 2) break;
      const last = page[page.length - 1]!;
      after = { subject: last.subject, roleKey: last.role_key };
    }
    expect(walked).toEqual(all.map((r) => `${r.subject} ${r.role_key}`));
  });

  it("rebuilds from the log to the same rows (checksum-verified swap)", async () => {
    const result = await runner.rebuild(grantsProjection.name, { requireEqual: true });
    expect(result).toMatchObject({ swapped: true });
    expect(result.checksums?.equal).toBe(true);
    expect(await rolesOf(h.db, "ada")).toEqual([{ role: "auditor" }, { role: "project-member", tenantId: "t2", projectId: "p1" }]);
  });
});
