import Fastify, { type FastifyInstance, type InjectOptions, type LightMyRequestResponse } from "fastify";
import { expect } from "vitest";
import { BuiltInIssuer } from "../../../adapters/identity/issuer.ts";
import type { OidcVerifier } from "../../../adapters/identity/oidc.ts";
import { authPlugin } from "../../../api/auth/plugin.ts";
import { CachedPrincipals } from "../../../api/auth/principals.ts";
import { authRoutes } from "../../../api/auth/routes.ts";
import { executeTenancyCommand } from "../../../commands/sentral/tenancy.ts";
import { allProjections, ProjectionRunner, tenancyProjection } from "../../../projections/index.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";

export const ISSUER = "http://dv.test";

export interface IdentityHarness extends ProjectionHarness {
  readonly runner: ProjectionRunner;
  readonly issuer: BuiltInIssuer;
  readonly app: FastifyInstance;
  request(options: InjectOptions & { token?: string }): Promise<LightMyRequestResponse>;
  createTenant(tenantId: string, projects?: readonly string[]): Promise<void>;
}

/**
 * A migrated database, the projection runner, the built-in issuer and a bare
 * fastify with authPlugin + authRoutes (no server.ts): what the identity
 * layer needs and nothing else.
 */
export async function createIdentityHarness(options: { oidc?: OidcVerifier; roleCacheTtlMs?: number } = {}): Promise<IdentityHarness> {
  const h = await createHarness();
  const runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
  await runner.start();
  const issuer = await BuiltInIssuer.create({ db: h.db, issuer: ISSUER });
  const principals = new CachedPrincipals({ db: h.db, ...(options.roleCacheTtlMs !== undefined ? { ttlMs: options.roleCacheTtlMs } : {}) });
  const app = Fastify({ logger: false });
  await app.register(authPlugin, { db: h.db, issuer, oidc: options.oidc ?? null, principals });
  await app.register(authRoutes, {
    db: h.db,
    store: h.store,
    issuer,
    oidc: options.oidc ?? null,
    principals,
    awaitProjection: (position) => runner.waitForPosition("grants", position, 20_000),
  });
  await app.ready();

  return {
    ...h,
    runner,
    issuer,
    app,
    request({ token, ...rest }) {
      return app.inject({ ...rest, headers: { ...(rest.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) } });
    },
    async createTenant(tenantId, projects = []) {
      const context = { actor: { kind: "user", id: "ops" } as const, correlationId: `c-${tenantId}` };
      let last = await executeTenancyCommand(h.store, { type: "CreateTenant", tenantId, name: `t-${tenantId}`.toLowerCase() }, context);
      for (const projectId of projects) {
        last = await executeTenancyCommand(h.store, { type: "CreateProject", tenantId, projectId, name: `p-${projectId}`.toLowerCase() }, context);
      }
      await runner.waitForPosition(tenancyProjection.name, last.position!, 20_000);
    },
    async dispose() {
      await app.close();
      await runner.stop();
      await h.dispose();
    },
  };
}

/** The problem+json body of a response, checked for the RFC 9457 shape and the expected status/code. */
export function expectProblem(response: LightMyRequestResponse, status: number, code: string): Record<string, unknown> {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = response.json() as Record<string, unknown>;
  expect(body).toMatchObject({ type: `https://dataverket.dev/problems/${code}`, status, code, title: expect.any(String), detail: expect.any(String) });
  return body;
}

export async function until(condition: () => Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
  return Date.now() - started;
}
