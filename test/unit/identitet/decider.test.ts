import { describe, expect, it } from "vitest";
import { IdentityCommandSchema, type IdentityCommand } from "../../../domain/identitet/commands.ts";
import { identityDecider } from "../../../domain/identitet/decider.ts";
import type { IdentityEvent } from "../../../domain/identitet/events.ts";
import type { Role } from "../../../domain/identitet/roles.ts";
import { fold } from "../../../domain/shared/decider.ts";
import { deciderSpec } from "../support/decider-spec.ts";

const spec = deciderSpec(identityDecider);
const ADA = "ada";
const tenantAdmin: Role = { role: "tenant-admin", tenantId: "t1" };
const member: Role = { role: "project-member", tenantId: "t1", projectId: "p1" };

const grant = (role: Role, subjectKind: "user" | "service" = "user", subject = ADA): IdentityCommand => ({ type: "GrantRole", subject, subjectKind, role });
const revoke = (role: Role, subject = ADA): IdentityCommand => ({ type: "RevokeRole", subject, role });
const granted = (role: Role, subjectKind: "user" | "service" = "user", subject = ADA): IdentityEvent => ({
  type: "RoleGranted",
  data: { subject, subjectKind, role },
});
const revoked = (role: Role, subject = ADA): IdentityEvent => ({ type: "RoleRevoked", data: { subject, role } });

describe("identity decider: GrantRole", () => {
  it("grants a role the subject does not hold", () => {
    const { state } = spec.given([]).when(grant(tenantAdmin)).then([granted(tenantAdmin)]);
    expect(state).toEqual({ kind: "user", roles: [tenantAdmin] });
  });

  it("grants a second, different role", () => {
    spec.given([granted(tenantAdmin)]).when(grant(member)).then([granted(member)]);
  });

  it("is idempotent: granting a held role appends nothing", () => {
    spec.given([granted(tenantAdmin)]).when(grant(tenantAdmin)).thenNothing();
  });

  it("compares roles by value, not by field order", () => {
    spec.given([granted(member)]).when(grant({ projectId: "p1", tenantId: "t1", role: "project-member" } as Role)).thenNothing();
  });

  it("tells apart the same role name in different tenants, and auditor of one tenant from auditor of all", () => {
    const history = [granted({ role: "tenant-admin", tenantId: "t1" }), granted({ role: "auditor", tenantId: "t1" })];
    spec.given(history).when(grant({ role: "tenant-admin", tenantId: "t2" })).then([granted({ role: "tenant-admin", tenantId: "t2" })]);
    spec.given(history).when(grant({ role: "auditor" })).then([granted({ role: "auditor" })]);
  });

  it("grants again after a revocation", () => {
    spec.given([granted(tenantAdmin), revoked(tenantAdmin)]).when(grant(tenantAdmin)).then([granted(tenantAdmin)]);
  });

  it("keeps a subject's kind for good: a user cannot become a service", () => {
    spec.given([granted(tenantAdmin, "user")]).when(grant(member, "service")).thenFails("subject_kind_mismatch", {
      subject: ADA,
      kind: "user",
      requested: "service",
    });
    // Even after every role was revoked.
    spec.given([granted(tenantAdmin, "user"), revoked(tenantAdmin)]).when(grant(member, "service")).thenFails("subject_kind_mismatch");
  });

  it("refuses a role shape the schema refuses even when the caller skipped parsing", () => {
    spec.given([]).when(grant({ role: "tenant-admin" } as unknown as Role)).thenFails("invalid_role");
    spec.given([]).when(grant({ role: "platform-admin", tenantId: "t1" } as unknown as Role)).thenFails("invalid_role");
    spec.given([]).when(grant({ role: "root" } as unknown as Role)).thenFails("invalid_role");
  });

  it("refuses an empty or spaced subject", () => {
    spec.given([]).when(grant(tenantAdmin, "user", "")).thenFails("invalid_subject");
    spec.given([]).when(grant(tenantAdmin, "user", "a b")).thenFails("invalid_subject");
  });

  it("writes the role with only its own fields", () => {
    const sloppy = { role: "auditor", tenantId: undefined } as Role;
    const [event] = spec.given([]).when(grant(sloppy)).then([granted({ role: "auditor" })]).events;
    expect(Object.keys((event as Extract<IdentityEvent, { type: "RoleGranted" }>).data.role)).toEqual(["role"]);
  });
});

describe("identity decider: RevokeRole", () => {
  it("revokes a held role", () => {
    const { state } = spec.given([granted(tenantAdmin), granted(member)]).when(revoke(tenantAdmin)).then([revoked(tenantAdmin)]);
    expect(state.roles).toEqual([member]);
  });

  it("is idempotent: revoking a role not held (never, or already revoked) appends nothing", () => {
    spec.given([]).when(revoke(tenantAdmin)).thenNothing();
    spec.given([granted(member)]).when(revoke(tenantAdmin)).thenNothing();
    spec.given([granted(tenantAdmin), revoked(tenantAdmin)]).when(revoke(tenantAdmin)).thenNothing();
  });

  it("revokes only the role in the named tenant", () => {
    const t2: Role = { role: "tenant-admin", tenantId: "t2" };
    const { state } = spec.given([granted(tenantAdmin), granted(t2)]).when(revoke(t2)).then([revoked(t2)]);
    expect(state.roles).toEqual([tenantAdmin]);
  });
});

describe("identity state", () => {
  it("folds a history to the roles held now, in grant order", () => {
    const state = fold(identityDecider, [
      granted(tenantAdmin),
      granted({ role: "auditor" }),
      granted(member),
      revoked({ role: "auditor" }),
    ]);
    expect(state).toEqual({ kind: "user", roles: [tenantAdmin, member] });
  });
});

describe("identity command schemas", () => {
  const failing = (input: unknown) => {
    const parsed = IdentityCommandSchema.safeParse(input);
    return parsed.success ? [] : parsed.error.issues.map((i) => i.path.join("."));
  };

  it("accepts each role shape", () => {
    for (const role of [{ role: "platform-admin" }, tenantAdmin, member, { role: "auditor" }, { role: "auditor", tenantId: "t1" }]) {
      expect(failing({ type: "GrantRole", subject: "svc-ci", subjectKind: "service", role })).toEqual([]);
    }
  });

  it("refuses unknown fields, a missing tenant, and an unknown kind, listing each", () => {
    expect(failing({ type: "GrantRole", subject: ADA, subjectKind: "robot", role: { role: "tenant-admin" } }).sort()).toEqual([
      "role.tenantId",
      "subjectKind",
    ]);
    expect(failing({ type: "RevokeRole", subject: ADA, role: tenantAdmin, force: true })).toEqual([""]);
    expect(failing({ type: "GrantRole", subject: ADA, subjectKind: "user", role: { role: "platform-admin", tenantId: "t1" } })).toEqual(["role"]);
  });
});
