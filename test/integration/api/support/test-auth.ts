import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { RoleSchema, type AuthenticatedActor, type Role } from "../../../../api/auth/types.ts";

/**
 * TEST ONLY: an auth plugin that believes the `x-test-actor` header
 * (JSON `{ kind, id, roles }`), so the API's tests can act as any actor
 * without tokens. Never part of api/: production passes the identity plugin.
 */
export const TEST_ACTOR_HEADER = "x-test-actor";

const ActorHeaderSchema = z.object({
  kind: z.enum(["user", "service", "system"]).default("user"),
  id: z.string().min(1),
  roles: z.array(RoleSchema),
});

export interface RecordedRoute {
  readonly method: string;
  readonly url: string;
}

/** `routes`, when given, receives every route registered after the auth plugin (all of the API's own). */
export function createTestAuth(options: { routes?: RecordedRoute[] } = {}) {
  return {
    async register(app: FastifyInstance): Promise<void> {
      await registerTestAuth(app);
      if (options.routes) {
        const routes = options.routes;
        app.addHook("onRoute", (route) => {
          for (const method of [route.method].flat()) routes.push({ method: String(method), url: route.url });
        });
      }
    },
  };
}

export const testAuth = createTestAuth();

async function registerTestAuth(app: FastifyInstance): Promise<void> {
    app.decorateRequest("actor", null);
    app.addHook("onRequest", async (request) => {
      const header = request.headers[TEST_ACTOR_HEADER];
      if (typeof header !== "string") return;
      const parsed = ActorHeaderSchema.parse(JSON.parse(header));
      request.actor = { ...parsed, issuer: "test" };
    });
}

export function actorHeader(actor: Omit<AuthenticatedActor, "issuer"> | null): Record<string, string> {
  return actor ? { [TEST_ACTOR_HEADER]: JSON.stringify({ kind: actor.kind, id: actor.id, roles: actor.roles }) } : {};
}

export const actors = {
  platformAdmin: (id = "root"): Omit<AuthenticatedActor, "issuer"> => ({ kind: "user", id, roles: [{ role: "platform-admin" }] }),
  tenantAdmin: (tenantId: string, id = `admin-${tenantId}`) => ({ kind: "user" as const, id, roles: [{ role: "tenant-admin", tenantId }] as Role[] }),
  member: (tenantId: string, projectId: string, id = `member-${projectId}`) => ({
    kind: "user" as const,
    id,
    roles: [{ role: "project-member", tenantId, projectId }] as Role[],
  }),
  auditor: (tenantId?: string, id = `auditor-${tenantId ?? "all"}`) => ({
    kind: "user" as const,
    id,
    roles: [tenantId ? { role: "auditor", tenantId } : { role: "auditor" }] as Role[],
  }),
};
