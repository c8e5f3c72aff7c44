import type { FastifyInstance } from "fastify";
import type { Kysely } from "kysely";
import type { LogPosition } from "../../adapters/eventstore/port.ts";
import type { BuiltInIssuer } from "../../adapters/identity/issuer.ts";
import type { OidcVerifier } from "../../adapters/identity/oidc.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { authPlugin } from "./plugin.ts";
import { CachedPrincipals } from "./principals.ts";
import { authRoutes, type AuthRoutesOptions } from "./routes.ts";

export { authPlugin, actorOrThrow, requireActor, BEARER_REALM, type AuthPluginOptions } from "./plugin.ts";
export { authRoutes, authorizeRoleChange, DEFAULT_TOKEN_RATE_LIMIT, type AuthRoutesOptions } from "./routes.ts";
export { CachedPrincipals, MAX_ROLE_CACHE_TTL_MS, type PrincipalResolver } from "./principals.ts";

export interface IdentityPluginOptions {
  readonly db: Kysely<any>;
  readonly store: CommandStore;
  readonly issuer: BuiltInIssuer;
  readonly oidc?: OidcVerifier | null;
  /** e.g. `(p) => runner.waitForPosition(grantsProjection.name, p, 5_000)` (read-your-writes for grants). */
  readonly awaitProjection?: (position: LogPosition) => Promise<void>;
  /** Default and maximum 5000 ms. */
  readonly roleCacheTtlMs?: number;
  readonly tokenRateLimit?: AuthRoutesOptions["tokenRateLimit"];
}

/**
 * authPlugin + authRoutes sharing one role cache, in the `{ register(app) }`
 * shape api/server.ts takes as `auth`. The plugin's hook and `request.actor`
 * land on `app` itself (skip-override); the routes are their own context.
 */
export function identityServerPlugin(options: IdentityPluginOptions): { register(app: FastifyInstance): Promise<void> } {
  return {
    async register(app) {
      const principals = new CachedPrincipals({ db: options.db, ...(options.roleCacheTtlMs !== undefined ? { ttlMs: options.roleCacheTtlMs } : {}) });
      const oidc = options.oidc ?? null;
      await app.register(authPlugin, { db: options.db, issuer: options.issuer, oidc, principals });
      await app.register(authRoutes, {
        db: options.db,
        store: options.store,
        issuer: options.issuer,
        oidc,
        principals,
        ...(options.awaitProjection ? { awaitProjection: options.awaitProjection } : {}),
        ...(options.tokenRateLimit !== undefined ? { tokenRateLimit: options.tokenRateLimit } : {}),
      });
    },
  };
}
