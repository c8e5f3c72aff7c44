import { describe, expect, expectTypeOf, it } from "vitest";
import { canGrantRole, visibleGrantTenants } from "../../../api/auth/policy.ts";
import { RoleSchema as ApiRoleSchema, type AuthenticatedActor, type Role as ApiRole } from "../../../api/auth/types.ts";
import { normalizeRole, roleKey, RoleSchema, type Role } from "../../../domain/identitet/roles.ts";

const actor = (...roles: ApiRole[]): AuthenticatedActor => ({ kind: "user", id: "u", roles, issuer: "test" });

describe("the domain's role schema and the API's Role contract", () => {
  it("infer the same type", () => {
    expectTypeOf<Role>().toEqualTypeOf<ApiRole>();
  });

  it("agree on every valid role (the domain only refuses extra fields, which the API strips)", () => {
    const valid = [
      { role: "platform-admin" },
      { role: "tenant-admin", tenantId: "t1" },
      { role: "project-member", tenantId: "t1", projectId: "p1" },
      { role: "auditor" },
      { role: "auditor", tenantId: "t1" },
    ];
    for (const role of valid) {
      expect(RoleSchema.parse(role)).toEqual(role);
      expect(ApiRoleSchema.parse(role)).toEqual(role);
    }
    const invalid = [{ role: "tenant-admin" }, { role: "project-member", tenantId: "t1" }, { role: "root" }, { role: "auditor", tenantId: "" }, {}];
    for (const role of invalid) {
      expect(RoleSchema.safeParse(role).success).toBe(false);
      expect(ApiRoleSchema.safeParse(role).success).toBe(false);
    }
    expect(ApiRoleSchema.safeParse({ role: "platform-admin", tenantId: "t1" }).success).toBe(true);
    expect(RoleSchema.safeParse({ role: "platform-admin", tenantId: "t1" }).success).toBe(false);
  });
});

describe("roleKey", () => {
  it("is equal for equal roles and different for different ones, whatever the ids contain", () => {
    expect(roleKey({ role: "project-member", tenantId: "t", projectId: "p" })).toBe(
      roleKey({ projectId: "p", role: "project-member", tenantId: "t" } as Role),
    );
    const roles: Role[] = [
      { role: "platform-admin" },
      { role: "auditor" },
      { role: "auditor", tenantId: "a" },
      { role: "tenant-admin", tenantId: "a" },
      { role: "tenant-admin", tenantId: "a,null" },
      { role: "project-member", tenantId: "a", projectId: "b" },
      { role: "project-member", tenantId: "a\",\"b", projectId: "c" },
      { role: "project-member", tenantId: "a", projectId: "b\",\"c" },
    ];
    expect(new Set(roles.map(roleKey)).size).toBe(roles.length);
  });

  it("normalizeRole drops undefined optionals", () => {
    expect(normalizeRole({ role: "auditor", tenantId: undefined } as Role)).toStrictEqual({ role: "auditor" });
  });
});

describe("grant policy", () => {
  it("platform roles need platform-admin; tenant roles need tenant-admin of that tenant", () => {
    const admin = actor({ role: "platform-admin" });
    const t1Admin = actor({ role: "tenant-admin", tenantId: "t1" });
    const t1Member = actor({ role: "project-member", tenantId: "t1", projectId: "p1" });
    for (const role of [{ role: "platform-admin" }, { role: "auditor" }, { role: "tenant-admin", tenantId: "t9" }] as Role[]) {
      expect(canGrantRole(admin, role)).toBe(true);
    }
    expect(canGrantRole(t1Admin, { role: "platform-admin" })).toBe(false);
    expect(canGrantRole(t1Admin, { role: "auditor" })).toBe(false);
    expect(canGrantRole(t1Admin, { role: "auditor", tenantId: "t1" })).toBe(true);
    expect(canGrantRole(t1Admin, { role: "tenant-admin", tenantId: "t1" })).toBe(true);
    expect(canGrantRole(t1Admin, { role: "project-member", tenantId: "t1", projectId: "p7" })).toBe(true);
    expect(canGrantRole(t1Admin, { role: "tenant-admin", tenantId: "t2" })).toBe(false);
    expect(canGrantRole(t1Member, { role: "project-member", tenantId: "t1", projectId: "p1" })).toBe(false);
    // An unparsed role with a stray tenantId is judged by its name.
    expect(canGrantRole(t1Admin, { role: "platform-admin", tenantId: "t1" } as unknown as Role)).toBe(false);
    expect(canGrantRole(t1Admin, { role: "root", tenantId: "t1" } as unknown as Role)).toBe(false);
  });

  it("lists grants of the tenants an actor administers or audits; all for platform admins and auditors", () => {
    expect(visibleGrantTenants(actor({ role: "platform-admin" }))).toBe("all");
    expect(visibleGrantTenants(actor({ role: "auditor" }))).toBe("all");
    expect(
      visibleGrantTenants(
        actor({ role: "tenant-admin", tenantId: "t1" }, { role: "auditor", tenantId: "t2" }, { role: "project-member", tenantId: "t3", projectId: "p" }),
      ),
    ).toEqual(["t1", "t2"]);
    expect(visibleGrantTenants(actor({ role: "project-member", tenantId: "t3", projectId: "p" }))).toEqual([]);
  });
});
