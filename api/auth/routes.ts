import type {} from "@fastify/rate-limit";
import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from "fastify";
import type { Kysely } from "kysely";
import { z } from "zod";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import type { LogPosition } from "../../adapters/eventstore/port.ts";
import { BOOTSTRAP_SUBJECT, MAX_SECRET_LENGTH, verifyBootstrapSecret } from "../../adapters/identity/bootstrap.ts";
import { MAX_TOKEN_TTL_SECONDS, type BuiltInIssuer, type IssuedToken } from "../../adapters/identity/issuer.ts";
import type { OidcVerifier } from "../../adapters/identity/oidc.ts";
import { executeIdentityCommand } from "../../commands/identitet/grants.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { RoleSchema, roleTenant, type Role } from "../../domain/identitet/roles.ts";
import { isBuiltInSubject, SubjectKindSchema, SubjectSchema } from "../../domain/identitet/subjects.ts";
import { getSubject, listGrants, roleOf, type RoleGrantRow } from "../../projections/identitet/grants.ts";
import { TENANCY_SCHEMA } from "../../projections/sentral/tenancy.ts";
import { actorOrThrow } from "./plugin.ts";
import { canAdministerPlatform, canGrantRole, canSee, visibleGrantTenants } from "./policy.ts";
import type { PrincipalResolver } from "./principals.ts";
import { AuthProblem, parseOr400, sendAuthProblem, toAuthProblem } from "./problem-reply.ts";
import type { AuthenticatedActor } from "./types.ts";

/**
 * Identity routes (register after authPlugin):
 *
 * | route | who | what |
 * |---|---|---|
 * | GET /.well-known/jwks.json | anyone | the built-in issuer's public keys |
 * | GET /v1/auth/config | anyone | built-in issuer + OIDC settings for the CLI's device flow |
 * | POST /v1/auth/token | anyone (rate limited) | `{grant_type:"bootstrap", secret}` -> token for bootstrap-admin |
 * | GET /v1/auth/whoami | authenticated | subject, kind, issuer, roles |
 * | POST /v1/service-accounts/{subject}/tokens | platform-admin | a token for a service account |
 * | POST /v1/role-grants | see canGrantRole | grant (idempotent: 200 when already held, 201 when granted) |
 * | DELETE /v1/role-grants | see canGrantRole | revoke (idempotent) |
 * | GET /v1/role-grants | see visibleGrantTenants | list, filtered in SQL |
 *
 * A role inside a tenant the caller cannot see answers 404 tenant_not_found
 * (as for a tenant that does not exist), never 403: no existence leak.
 */
export interface AuthRoutesOptions {
  readonly db: Kysely<any>;
  readonly store: CommandStore;
  readonly issuer: BuiltInIssuer;
  readonly oidc?: OidcVerifier | null;
  /** The authPlugin's resolver, so a grant served here is seen at once by this instance. */
  readonly principals?: PrincipalResolver;
  /**
   * Read-your-writes: resolve when the grants projection has applied this
   * position, e.g. `(p) => runner.waitForPosition("grants", p, 5_000)`.
   * Without it a grant answers as soon as it is in the log and takes effect
   * when the projection applies it (normally milliseconds later).
   */
  readonly awaitProjection?: (position: LogPosition) => Promise<void>;
  /** Per-client limit on POST /v1/auth/token, on top of the server's global one (default 10 per minute); false: none. */
  readonly tokenRateLimit?: { readonly max: number; readonly timeWindow: number | string } | false;
}

export const DEFAULT_TOKEN_RATE_LIMIT = { max: 10, timeWindow: "1 minute" } as const;

const TokenRequestSchema = z.strictObject({
  grant_type: z.literal("bootstrap", { message: 'only grant_type "bootstrap" is supported' }),
  secret: z.string().min(1).max(MAX_SECRET_LENGTH),
});

const ServiceTokenRequestSchema = z
  .strictObject({
    expiresInSeconds: z.int().min(60).max(MAX_TOKEN_TTL_SECONDS).optional(),
  })
  .optional();

const ServiceAccountParams = z.object({ subject: z.string() });

const GrantBodySchema = z.strictObject({ subject: SubjectSchema, subjectKind: SubjectKindSchema, role: RoleSchema });
const RevokeBodySchema = z.strictObject({ subject: SubjectSchema, subjectKind: SubjectKindSchema.optional(), role: RoleSchema });

const DEFAULT_PAGE = 50;
const MAX_PAGE = 200;
const GrantListQuery = z.object({
  subject: SubjectSchema.optional(),
  tenantId: z.string().min(1).max(100).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(DEFAULT_PAGE),
  cursor: z.string().min(1).max(1000).optional(),
});

const publicAccess = { access: { level: "public" } } as const;
const authenticatedAccess = { access: { level: "authenticated" } } as const;

export const authRoutes: FastifyPluginAsync<AuthRoutesOptions> = async (app: FastifyInstance, options) => {
  const { db, store, issuer } = options;
  const oidc = options.oidc ?? null;
  const tokenRateLimit = options.tokenRateLimit === undefined ? DEFAULT_TOKEN_RATE_LIMIT : options.tokenRateLimit;

  // Problems for what these routes know; anything else goes to the server's handler.
  app.setErrorHandler((error, request, reply) => {
    const problem = toAuthProblem(error);
    if (!problem) throw error;
    if (problem.status >= 500) request.log.error({ err: error }, "request failed");
    return sendAuthProblem(request, reply, problem);
  });

  app.get("/.well-known/jwks.json", { config: { ...publicAccess, rateLimit: false } }, async (_request, reply) => {
    reply.header("cache-control", "public, max-age=300");
    return issuer.jwks();
  });

  app.get("/v1/auth/config", { config: publicAccess }, async () => ({
    issuer: issuer.issuer,
    audience: issuer.audience,
    jwksUri: "/.well-known/jwks.json",
    oidc: oidc ? await oidc.publicConfig() : null,
  }));

  app.post(
    "/v1/auth/token",
    { config: { ...publicAccess, ...(tokenRateLimit ? { rateLimit: { max: tokenRateLimit.max, timeWindow: tokenRateLimit.timeWindow } } : {}) } },
    async (request, reply) => {
      const body = parseOr400(TokenRequestSchema, request.body ?? {}, "body");
      // scrypt + timingSafeEqual; the same work whether or not a secret is stored.
      if (!(await verifyBootstrapSecret(db, body.secret))) {
        request.log.warn({ subject: BOOTSTRAP_SUBJECT }, "bootstrap token refused: wrong secret");
        throw new AuthProblem("invalid_credentials", "the bootstrap secret is not correct");
      }
      const issued = await issuer.issue({ subject: BOOTSTRAP_SUBJECT, kind: "user" });
      request.log.info({ subject: issued.subject, tokenId: issued.tokenId }, "bootstrap token issued");
      return tokenResponse(reply, issued);
    },
  );

  app.get("/v1/auth/whoami", { config: authenticatedAccess }, async (request) => {
    const actor = actorOrThrow(request);
    return { subject: actor.id, kind: actor.kind, issuer: actor.issuer, roles: actor.roles };
  });

  app.post(
    "/v1/service-accounts/:subject/tokens",
    { config: { access: { level: "administer-platform" } } },
    async (request, reply) => {
      const actor = actorOrThrow(request);
      // Platform-admin only: roles are read per request, so a token minted by a tenant-admin for a service
      // account would silently gain whatever a platform-admin grants that account later.
      if (!canAdministerPlatform(actor)) throw new AuthProblem("forbidden", "issuing service-account tokens needs platform-admin");
      const { subject } = parseOr400(ServiceAccountParams, request.params, "path");
      const body = parseOr400(ServiceTokenRequestSchema, request.body ?? undefined, "body");
      const known = isBuiltInSubject(subject) ? await getSubject(db, subject) : undefined;
      if (!known || known.subject_kind !== "service") {
        throw new AuthProblem("service_account_not_found", `no service account ${subject} (grant it a role with subjectKind "service" first)`, {
          details: { subject },
        });
      }
      const issued = await issuer.issue({ subject, kind: "service", ...(body?.expiresInSeconds ? { ttlSeconds: body.expiresInSeconds } : {}) });
      request.log.info({ subject, tokenId: issued.tokenId, issuedBy: actor.id, expiresAt: issued.expiresAt }, "service-account token issued");
      reply.code(201);
      return tokenResponse(reply, issued);
    },
  );

  app.post("/v1/role-grants", { config: authenticatedAccess }, async (request, reply) => {
    const actor = actorOrThrow(request);
    const body = parseOr400(GrantBodySchema, request.body, "body");
    authorizeRoleChange(actor, body.role);
    await requireRoleTarget(db, body.role);
    const result = await executeIdentityCommand(
      store,
      { type: "GrantRole", subject: body.subject, subjectKind: body.subjectKind, role: body.role },
      { actor: { kind: actor.kind, id: actor.id }, correlationId: request.id },
    );
    const changed = result.events.length > 0;
    await settle(options, body.subject, changed ? result.position : null);
    reply.code(changed ? 201 : 200);
    return { subject: body.subject, subjectKind: body.subjectKind, role: body.role, changed, position: result.position ? formatPosition(result.position) : null };
  });

  app.delete("/v1/role-grants", { config: authenticatedAccess }, async (request) => {
    const actor = actorOrThrow(request);
    const body = parseOr400(RevokeBodySchema, request.body, "body");
    authorizeRoleChange(actor, body.role);
    const result = await executeIdentityCommand(
      store,
      { type: "RevokeRole", subject: body.subject, role: body.role },
      { actor: { kind: actor.kind, id: actor.id }, correlationId: request.id },
    );
    const changed = result.events.length > 0;
    await settle(options, body.subject, changed ? result.position : null);
    return { subject: body.subject, role: body.role, changed, position: result.position ? formatPosition(result.position) : null };
  });

  app.get("/v1/role-grants", { config: authenticatedAccess }, async (request) => {
    const actor = actorOrThrow(request);
    const query = parseOr400(GrantListQuery, request.query, "query");
    const visible = visibleGrantTenants(actor);
    if (query.tenantId !== undefined && visible !== "all" && !visible.includes(query.tenantId)) {
      if (!canSee(actor, { tenantId: query.tenantId })) throw tenantNotFound(query.tenantId);
      throw new AuthProblem("forbidden", "listing a tenant's role grants needs tenant-admin or auditor there");
    }
    const rows = await listGrants(db, {
      visibleTenants: visible,
      limit: query.limit + 1,
      ...(query.subject !== undefined ? { subject: query.subject } : {}),
      ...(query.tenantId !== undefined ? { tenantId: query.tenantId } : {}),
      ...(query.cursor !== undefined ? { after: decodeGrantCursor(query.cursor) } : {}),
    });
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    return {
      items: page.map(renderGrant),
      nextCursor: rows.length > query.limit && last ? encodeGrantCursor(last) : null,
    };
  });
};

function tokenResponse(reply: FastifyReply, issued: IssuedToken) {
  // RFC 6749 §5.1: token responses must not be cached.
  reply.header("cache-control", "no-store").header("pragma", "no-cache");
  return {
    access_token: issued.token,
    token_type: "Bearer" as const,
    expires_in: issued.expiresIn,
    subject: issued.subject,
    expires_at: issued.expiresAt.toISOString(),
    token_id: issued.tokenId,
  };
}

/** 404 when the role's tenant (or project) is invisible to the actor, 403 when visible but not theirs to administer. */
export function authorizeRoleChange(actor: AuthenticatedActor, role: Role): void {
  if (canGrantRole(actor, role)) return;
  const tenantId = roleTenant(role);
  if (tenantId === null) {
    throw new AuthProblem("forbidden", `granting ${role.role === "auditor" ? "a platform-wide auditor" : "platform-admin"} needs platform-admin`);
  }
  if (!canSee(actor, { tenantId })) throw tenantNotFound(tenantId);
  if (role.role === "project-member" && !canSee(actor, { tenantId, projectId: role.projectId })) {
    throw projectNotFound(tenantId, role.projectId);
  }
  throw new AuthProblem("forbidden", "granting roles in this tenant needs tenant-admin");
}

/** A grant must name a tenant (and project) that exists, so a typo does not create a dangling grant. */
async function requireRoleTarget(db: Kysely<any>, role: Role): Promise<void> {
  if (!("tenantId" in role) || role.tenantId === undefined) return;
  const tenancy = db.withSchema(TENANCY_SCHEMA);
  const tenant = await tenancy.selectFrom("tenants").select("tenant_id").where("tenant_id", "=", role.tenantId).executeTakeFirst();
  if (!tenant) throw tenantNotFound(role.tenantId);
  if (role.role === "project-member") {
    const project = await tenancy
      .selectFrom("projects")
      .select("project_id")
      .where("tenant_id", "=", role.tenantId)
      .where("project_id", "=", role.projectId)
      .executeTakeFirst();
    if (!project) throw projectNotFound(role.tenantId, role.projectId);
  }
}

async function settle(options: AuthRoutesOptions, subject: string, position: LogPosition | null): Promise<void> {
  if (position && options.awaitProjection) await options.awaitProjection(position);
  options.principals?.invalidate(subject);
}

function tenantNotFound(tenantId: string): AuthProblem {
  return new AuthProblem("tenant_not_found", `tenant ${tenantId} does not exist`, { details: { tenantId } });
}

function projectNotFound(tenantId: string, projectId: string): AuthProblem {
  return new AuthProblem("project_not_found", `project ${projectId} does not exist`, { details: { tenantId, projectId } });
}

function renderGrant(row: RoleGrantRow) {
  return {
    subject: row.subject,
    subjectKind: row.subject_kind,
    role: roleOf(row),
    grantedAt: row.granted_at.toISOString(),
    grantedBy: row.granted_by,
  };
}

// Cursor: base64url of {"l":"role-grants","k":[subject, role_key]}; carries no authority (each page is filtered again).
const CURSOR_LIST = "role-grants";
const CursorSchema = z.strictObject({ l: z.literal(CURSOR_LIST), k: z.tuple([z.string(), z.string()]) });

function encodeGrantCursor(row: RoleGrantRow): string {
  return Buffer.from(JSON.stringify({ l: CURSOR_LIST, k: [row.subject, row.role_key] }), "utf8").toString("base64url");
}

function decodeGrantCursor(cursor: string): { subject: string; roleKey: string } {
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error("not base64url");
    const parsed = CursorSchema.parse(JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")));
    return { subject: parsed.k[0], roleKey: parsed.k[1] };
  } catch {
    throw new AuthProblem("invalid_cursor", "the cursor is not one this list made", { errors: [{ path: "cursor", message: "not a role-grants cursor", in: "query" }] });
  }
}

