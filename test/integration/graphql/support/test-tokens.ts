import { z } from "zod";
import { RoleSchema, type AuthenticatedActor } from "../../../../api/auth/types.ts";
import type { TestActor } from "../../api/support/harness.ts";

/**
 * TEST ONLY: the `authenticateToken` the GraphQL module gets in tests. A
 * "token" is base64url(JSON `{ kind, id, roles }`); anything else does not
 * verify. Production passes the identity issuer's verification instead.
 */
const TokenSchema = z.object({
  kind: z.enum(["user", "service", "system"]),
  id: z.string().min(1),
  roles: z.array(RoleSchema),
});

export function tokenFor(actor: TestActor): string {
  return Buffer.from(JSON.stringify({ kind: actor.kind, id: actor.id, roles: actor.roles }), "utf8").toString("base64url");
}

export async function authenticateTestToken(token: string): Promise<AuthenticatedActor | null> {
  try {
    const parsed = TokenSchema.safeParse(JSON.parse(Buffer.from(token, "base64url").toString("utf8")));
    return parsed.success ? { ...parsed.data, issuer: "test" } : null;
  } catch {
    return null;
  }
}
