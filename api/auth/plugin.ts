import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import type { Kysely } from "kysely";
import type { BuiltInIssuer } from "../../adapters/identity/issuer.ts";
import type { OidcVerifier } from "../../adapters/identity/oidc.ts";
import { InvalidTokenError, type VerifiedToken } from "../../adapters/identity/port.ts";
import { actorOf, verifyToken } from "./authenticate.ts";
import { AuthProblem, sendAuthProblem } from "./problem-reply.ts";
import { CachedPrincipals, type PrincipalResolver } from "./principals.ts";
import type { AuthenticatedActor } from "./types.ts";

/**
 * Authentication: sets `request.actor` on every request, in an onRequest hook
 * at the level it is registered (it skips fastify's encapsulation, like
 * fastify-plugin, so sibling plugins' routes see the decoration and the hook).
 *
 * - No Authorization header, or one with another scheme than Bearer:
 *   anonymous (`request.actor = null`); routes that need an actor answer 401
 *   (see `requireActor`, or api/http/access.ts).
 * - `Bearer <token>`: routed by its (unverified) `iss` to the built-in issuer
 *   or the OIDC verifier, then verified there. Anything wrong (bad signature,
 *   expired, wrong audience, unknown issuer) answers 401 problem
 *   `invalid_token` with `WWW-Authenticate: Bearer error="invalid_token"`
 *   at once: a client that sent a token meant to be someone, and silently
 *   treating it as anonymous would turn "your token expired" into confusing
 *   404s. An OIDC provider that cannot be reached answers 503.
 * - Roles come from the grants read model (never from the token) through
 *   `PrincipalResolver`, cached at most 5 s.
 */
export interface AuthPluginOptions {
  readonly db: Kysely<any>;
  readonly issuer: BuiltInIssuer;
  readonly oidc?: OidcVerifier | null;
  /** Share one with authRoutes so grants served here invalidate the cache; made from db when absent. */
  readonly principals?: PrincipalResolver;
  /** TTL of the role cache when `principals` is absent (default and maximum 5000 ms). */
  readonly roleCacheTtlMs?: number;
}

export const BEARER_REALM = "dataverket";

const authPluginImpl: FastifyPluginAsync<AuthPluginOptions> = async (app: FastifyInstance, options) => {
  const principals = options.principals ?? new CachedPrincipals({ db: options.db, ...(options.roleCacheTtlMs !== undefined ? { ttlMs: options.roleCacheTtlMs } : {}) });
  const oidc = options.oidc ?? null;

  if (!app.hasRequestDecorator("actor")) app.decorateRequest("actor", null);

  app.addHook("onRequest", async (request, reply) => {
    request.actor = null;
    const header = request.headers.authorization;
    if (header === undefined) return;
    const match = /^Bearer(?:\s+(\S*))?\s*$/i.exec(header);
    if (!match) {
      // Another scheme (Basic, ...) or garbage after the token: not ours to judge unless it claims to be Bearer.
      if (/^Bearer\s/i.test(header)) return rejectToken(request, reply, "the Authorization header is not `Bearer <token>`");
      return;
    }
    const token = match[1];
    if (!token) return rejectToken(request, reply, "the Authorization header carries no token");

    let verified: VerifiedToken;
    try {
      verified = await verifyToken(token, { issuer: options.issuer, oidc });
    } catch (error) {
      if (!(error instanceof InvalidTokenError)) throw error;
      if (error.reason === "unavailable") {
        request.log.warn({ err: error.cause ?? error }, "identity provider unavailable");
        return sendAuthProblem(request, reply, new AuthProblem("identity_provider_unavailable", error.message, { headers: { "retry-after": "5" } }));
      }
      return rejectToken(request, reply, error.message);
    }

    request.actor = await actorOf(verified, principals);
  });
};

/** Skip encapsulation (what fastify-plugin does): the hook and decoration apply where the plugin is registered. */
(authPluginImpl as unknown as Record<symbol, unknown>)[Symbol.for("skip-override")] = true;
(authPluginImpl as unknown as Record<symbol, unknown>)[Symbol.for("fastify.display-name")] = "dataverket-auth";

export const authPlugin: FastifyPluginAsync<AuthPluginOptions> = authPluginImpl;

/** 401 invalid_token with the RFC 6750 challenge. */
function rejectToken(request: FastifyRequest, reply: FastifyReply, detail: string): FastifyReply {
  const description = detail.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, "");
  return sendAuthProblem(
    request,
    reply,
    new AuthProblem("invalid_token", detail, {
      headers: { "www-authenticate": `Bearer realm="${BEARER_REALM}", error="invalid_token", error_description="${description}"` },
    }),
  );
}

/** preHandler (or onRequest after the auth hook): 401 `unauthenticated` for anonymous requests. */
export async function requireActor(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
  if (request.actor) return undefined;
  return sendAuthProblem(
    request,
    reply,
    new AuthProblem("unauthenticated", "this request needs a bearer token", { headers: { "www-authenticate": `Bearer realm="${BEARER_REALM}"` } }),
  );
}

/** The actor of a request that must have one (inside handlers; throws the 401 problem). */
export function actorOrThrow(request: FastifyRequest): AuthenticatedActor {
  if (!request.actor) {
    throw new AuthProblem("unauthenticated", "this request needs a bearer token", { headers: { "www-authenticate": `Bearer realm="${BEARER_REALM}"` } });
  }
  return request.actor;
}
