import type { FastifyInstance, FastifyRequest } from "fastify";
import {
  canAdministerPlatform,
  canAdministerTenant,
  canSee,
  canWrite,
  type ResourceScope,
} from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { ApiProblem } from "../problem.ts";

/**
 * Every REST route declares who may call it (route `config.access`); one
 * preValidation hook enforces it before the body is validated, so what an
 * actor may not see answers 404 whatever it sent. A route without a
 * declaration fails at startup. The decisions are the pure functions of
 * api/auth/policy.ts:
 *
 * | level               | anonymous | !canSee(scope) | then needs                 |
 * |---------------------|-----------|----------------|----------------------------|
 * | public              | allowed   | -              | -                          |
 * | authenticated       | 401       | -              | an actor (handler filters) |
 * | read                | 401       | 404            | -                          |
 * | write               | 401       | 404            | canWrite, else 403         |
 * | administer-tenant   | 401       | 404            | canAdministerTenant, 403   |
 * | administer-platform | 401       | 404 (if scoped)| canAdministerPlatform, 403 |
 *
 * The 404 names the outermost thing the actor cannot see (tenant, then
 * project), with the same problem as for a resource that does not exist.
 */
export type PathParams = Readonly<Record<string, string | undefined>>;

export type Access =
  | { readonly level: "public" | "authenticated" }
  | { readonly level: "read" | "write" | "administer-tenant"; readonly scope: (params: PathParams) => ResourceScope }
  | { readonly level: "administer-platform"; readonly scope?: (params: PathParams) => ResourceScope };

export type AccessLevel = Access["level"];

declare module "fastify" {
  interface FastifyContextConfig {
    /** Who may call the route (see api/http/access.ts). Required on every /v1 route. */
    access?: Access;
  }
}

/** Scope helpers for the usual path shapes. */
export const tenantScope = (params: PathParams): ResourceScope => ({ tenantId: params.tenantId ?? "" });
export const projectScope = (params: PathParams): ResourceScope => ({
  tenantId: params.tenantId ?? "",
  projectId: params.projectId ?? "",
});

export function actorOf(request: FastifyRequest): AuthenticatedActor {
  const actor = request.actor ?? null;
  if (!actor) throw new ApiProblem("unauthenticated", "this request needs a bearer token", { headers: { "www-authenticate": "Bearer" } });
  return actor;
}

/** Throws the 404 problem when the actor may not see the scope. */
export function requireVisible(actor: AuthenticatedActor, scope: ResourceScope): void {
  if (!canSee(actor, { tenantId: scope.tenantId })) {
    throw new ApiProblem("tenant_not_found", `tenant ${scope.tenantId} does not exist`, { details: { tenantId: scope.tenantId } });
  }
  if (scope.projectId !== undefined && !canSee(actor, scope)) {
    throw new ApiProblem("project_not_found", `project ${scope.projectId} does not exist`, {
      details: { tenantId: scope.tenantId, projectId: scope.projectId },
    });
  }
}

function forbidden(what: string): ApiProblem {
  return new ApiProblem("forbidden", `your roles do not allow you to ${what}`);
}

export function checkAccess(access: Access, actor: AuthenticatedActor | null, params: PathParams): void {
  if (access.level === "public") return;
  if (!actor) actorOf({ actor } as FastifyRequest);
  const who = actor!;
  switch (access.level) {
    case "authenticated":
      return;
    case "read":
      requireVisible(who, access.scope(params));
      return;
    case "write": {
      const scope = access.scope(params);
      requireVisible(who, scope);
      if (!canWrite(who, scope)) throw forbidden("change this resource");
      return;
    }
    case "administer-tenant": {
      const scope = access.scope(params);
      requireVisible(who, scope);
      if (!canAdministerTenant(who, scope.tenantId)) throw forbidden("administer this tenant");
      return;
    }
    case "administer-platform": {
      if (access.scope) requireVisible(who, access.scope(params));
      if (!canAdministerPlatform(who)) throw forbidden("do this (it needs platform-admin)");
      return;
    }
  }
}

/** Enforces `config.access` on every route of `app` (an encapsulated context) and refuses routes without one. */
export function enforceAccess(app: FastifyInstance): void {
  app.addHook("onRoute", (route) => {
    if (!route.config?.access) {
      throw new Error(`route ${String(route.method)} ${route.url} declares no config.access (see api/http/access.ts)`);
    }
  });
  app.addHook("preValidation", async (request) => {
    const access = request.routeOptions.config.access;
    if (!access) throw new Error(`route ${request.routeOptions.url} has no access declaration`);
    checkAccess(access, request.actor ?? null, request.params as PathParams);
  });
}
