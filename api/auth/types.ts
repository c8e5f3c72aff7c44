import { z } from "zod";
import "fastify";

/**
 * Roles are granted to a subject (a token's `sub`) by events in Identitet.
 * - platform-admin: everything, every tenant
 * - tenant-admin:   everything inside one tenant
 * - project-member: read the tenant's own record, read and work inside one project
 * - auditor:        read-only, including event history, of one tenant (or of all, with no tenantId)
 */
export const RoleSchema = z.discriminatedUnion("role", [
  z.object({ role: z.literal("platform-admin") }),
  z.object({ role: z.literal("tenant-admin"), tenantId: z.string().min(1) }),
  z.object({ role: z.literal("project-member"), tenantId: z.string().min(1), projectId: z.string().min(1) }),
  z.object({ role: z.literal("auditor"), tenantId: z.string().min(1).optional() }),
]);
export type Role = z.infer<typeof RoleSchema>;

/** Who is calling, as established by authentication. Every request that gets past auth has one. */
export interface AuthenticatedActor {
  readonly kind: "user" | "service" | "system";
  /** The token subject. */
  readonly id: string;
  readonly roles: readonly Role[];
  /** Where the identity came from: the built-in issuer or an OIDC provider. */
  readonly issuer: string;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the authentication plugin; null for anonymous requests. */
    actor: AuthenticatedActor | null;
  }
}
