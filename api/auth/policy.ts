import type { AuthenticatedActor, Role } from "./types.ts";

/**
 * Authorization as pure functions of the actor and the resource's scope.
 * The API answers 404 (not 403) whenever `canSee` is false, so an actor
 * learns nothing about resources of tenants it has no role in; 403 only when
 * the actor can see the resource but may not do this to it.
 */
export interface ResourceScope {
  readonly tenantId: string;
  readonly projectId?: string;
}

const has = (actor: AuthenticatedActor, match: (role: Role) => boolean) => actor.roles.some(match);

export function isPlatformAdmin(actor: AuthenticatedActor): boolean {
  return has(actor, (r) => r.role === "platform-admin");
}

export function isPlatformAuditor(actor: AuthenticatedActor): boolean {
  return has(actor, (r) => r.role === "auditor" && r.tenantId === undefined);
}

/** May the actor know this resource exists and read it? */
export function canSee(actor: AuthenticatedActor, scope: ResourceScope): boolean {
  return has(actor, (role) => {
    switch (role.role) {
      case "platform-admin":
        return true;
      case "auditor":
        return role.tenantId === undefined || role.tenantId === scope.tenantId;
      case "tenant-admin":
        return role.tenantId === scope.tenantId;
      case "project-member":
        // A member sees its tenant's record and its own project, not sibling projects.
        return role.tenantId === scope.tenantId && (scope.projectId === undefined || scope.projectId === role.projectId);
    }
  });
}

/** May the actor change this resource (or create inside it)? Auditors never may. */
export function canWrite(actor: AuthenticatedActor, scope: ResourceScope): boolean {
  return has(actor, (role) => {
    switch (role.role) {
      case "platform-admin":
        return true;
      case "tenant-admin":
        return role.tenantId === scope.tenantId;
      case "project-member":
        return role.tenantId === scope.tenantId && scope.projectId !== undefined && scope.projectId === role.projectId;
      case "auditor":
        return false;
    }
  });
}

/** May the actor administer the tenant itself: rename, suspend, quotas, projects, role grants inside it. */
export function canAdministerTenant(actor: AuthenticatedActor, tenantId: string): boolean {
  return has(actor, (role) => role.role === "platform-admin" || (role.role === "tenant-admin" && role.tenantId === tenantId));
}

/** Platform-level acts: create or suspend tenants, grant platform roles. */
export function canAdministerPlatform(actor: AuthenticatedActor): boolean {
  return isPlatformAdmin(actor);
}

/** May the actor read raw event history of this tenant (auditors and admins)? */
export function canReadHistory(actor: AuthenticatedActor, tenantId: string): boolean {
  return has(actor, (role) =>
    role.role === "platform-admin" ||
    (role.role === "auditor" && (role.tenantId === undefined || role.tenantId === tenantId)) ||
    (role.role === "tenant-admin" && role.tenantId === tenantId));
}

/**
 * Which tenants a list may show: "all", or the ids the actor has any role in.
 * List queries filter by this in SQL, so rows of other tenants are never read into the response.
 */
export function visibleTenants(actor: AuthenticatedActor): "all" | readonly string[] {
  if (isPlatformAdmin(actor) || isPlatformAuditor(actor)) return "all";
  return [...new Set(actor.roles.flatMap((role) => ("tenantId" in role && role.tenantId ? [role.tenantId] : [])))];
}

/** Which projects of a tenant a list may show: "all", or the member's own. */
export function visibleProjects(actor: AuthenticatedActor, tenantId: string): "all" | readonly string[] {
  if (has(actor, (r) => r.role === "platform-admin" || (r.role === "tenant-admin" && r.tenantId === tenantId) ||
      (r.role === "auditor" && (r.tenantId === undefined || r.tenantId === tenantId)))) {
    return "all";
  }
  return actor.roles.flatMap((r) => (r.role === "project-member" && r.tenantId === tenantId ? [r.projectId] : []));
}

/**
 * May the actor grant or revoke this role? Platform-wide roles (platform-admin,
 * auditor of all tenants) need platform-admin; a role inside a tenant needs
 * canAdministerTenant there (a tenant-admin hands out tenant-admin,
 * project-member and auditor of their own tenant). When this is false and
 * `canSee` of the role's tenant is false too, answer 404, not 403.
 */
export function canGrantRole(actor: AuthenticatedActor, role: Role): boolean {
  // Decided by the role's name, never by which fields happen to be present: an unparsed
  // { role: "platform-admin", tenantId } must not pass as a tenant role.
  switch (role.role) {
    case "platform-admin":
      return isPlatformAdmin(actor);
    case "auditor":
      return role.tenantId === undefined ? isPlatformAdmin(actor) : canAdministerTenant(actor, role.tenantId);
    case "tenant-admin":
    case "project-member":
      return canAdministerTenant(actor, role.tenantId);
    default:
      return false;
  }
}

/**
 * Whose role grants the actor may list: "all" (platform grants included) for
 * platform-admins and platform auditors; else the tenants it administers or
 * audits. Project members see none (whoami shows their own roles).
 */
export function visibleGrantTenants(actor: AuthenticatedActor): "all" | readonly string[] {
  if (isPlatformAdmin(actor) || isPlatformAuditor(actor)) return "all";
  return [
    ...new Set(
      actor.roles.flatMap((r) => ((r.role === "tenant-admin" || r.role === "auditor") && r.tenantId !== undefined ? [r.tenantId] : [])),
    ),
  ];
}
