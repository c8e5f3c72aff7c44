import { z } from "zod";
import { DomainError } from "../shared/errors.ts";

/**
 * The roles a subject can hold. This is the domain's copy of the contract in
 * api/auth/types.ts (`RoleSchema`): the domain imports nothing outside
 * domain/, so the shape is repeated here and a unit test
 * (test/unit/identitet/roles.test.ts) proves both agree, type and values.
 *
 * Objects are strict here (the API's schema strips unknown keys): a grant of
 * `{ role: "platform-admin", tenantId: "t1" }` is a mistake that would give
 * far more than its author meant, so it is refused rather than trimmed.
 */
const TenantId = z.string().min(1).max(100);
const ProjectId = z.string().min(1).max(100);

export const PlatformAdminRoleSchema = z.strictObject({ role: z.literal("platform-admin") });
export const TenantAdminRoleSchema = z.strictObject({ role: z.literal("tenant-admin"), tenantId: TenantId });
export const ProjectMemberRoleSchema = z.strictObject({
  role: z.literal("project-member"),
  tenantId: TenantId,
  projectId: ProjectId,
});
/** Without tenantId: an auditor of the whole platform. */
export const AuditorRoleSchema = z.strictObject({ role: z.literal("auditor"), tenantId: TenantId.optional() });

export const RoleSchema = z.discriminatedUnion("role", [
  PlatformAdminRoleSchema,
  TenantAdminRoleSchema,
  ProjectMemberRoleSchema,
  AuditorRoleSchema,
]);
export type Role = z.infer<typeof RoleSchema>;
export type RoleName = Role["role"];

export const ROLE_NAMES = ["platform-admin", "tenant-admin", "project-member", "auditor"] as const satisfies readonly RoleName[];

/**
 * One canonical string per role (JSON of [role, tenantId, projectId], nulls
 * for absent parts): equal roles have equal keys, and no two different roles
 * share one whatever their ids contain. The read model keys grants by it.
 */
export function roleKey(role: Role): string {
  const tenantId = "tenantId" in role && role.tenantId !== undefined ? role.tenantId : null;
  const projectId = "projectId" in role ? role.projectId : null;
  return JSON.stringify([role.role, tenantId, projectId]);
}

export function sameRole(a: Role, b: Role): boolean {
  return roleKey(a) === roleKey(b);
}

/** The tenant a role is about; null for platform-wide roles (platform-admin, auditor of all). */
export function roleTenant(role: Role): string | null {
  return "tenantId" in role && role.tenantId !== undefined ? role.tenantId : null;
}

/** A role with only its own fields, in a fixed order (what events and reads carry). */
export function normalizeRole(role: Role): Role {
  switch (role.role) {
    case "platform-admin":
      return { role: "platform-admin" };
    case "tenant-admin":
      return { role: "tenant-admin", tenantId: role.tenantId };
    case "project-member":
      return { role: "project-member", tenantId: role.tenantId, projectId: role.projectId };
    case "auditor":
      return role.tenantId === undefined ? { role: "auditor" } : { role: "auditor", tenantId: role.tenantId };
  }
}

/** The same rule as a domain rule, so the decider never trusts its caller to have parsed. */
export function checkRole(role: unknown): DomainError | undefined {
  const parsed = RoleSchema.safeParse(role);
  if (parsed.success) return undefined;
  return new DomainError("invalid_role", `not a role: ${parsed.error.issues.map((i) => i.message).join("; ")}`, { role });
}
