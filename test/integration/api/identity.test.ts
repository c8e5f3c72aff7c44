import type { FastifyInstance, InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBootstrap } from "../../../adapters/identity/bootstrap.ts";
import { BuiltInIssuer } from "../../../adapters/identity/issuer.ts";
import { identityServerPlugin } from "../../../api/auth/index.ts";
import { buildServer } from "../../../api/server.ts";
import { allProjections, grantsProjection, ProjectionRunner } from "../../../projections/index.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";

/**
 * The REST API behind the real identity plugin, as `dv up` composes it: the
 * bootstrap secret buys a token, tokens carry only a subject, roles come from
 * grants, and the API's access rules apply to whoever the token names.
 */
describe("REST /v1 with the identity plugin and real tokens", () => {
  let db: ProjectionHarness;
  let runner: ProjectionRunner;
  let issuer: BuiltInIssuer;
  let app: FastifyInstance;
  let admin: string;

  const as = (token: string | null, options: InjectOptions) =>
    app.inject({ ...options, headers: { ...(options.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) } });

  beforeAll(async () => {
    db = await createHarness();
    runner = new ProjectionRunner({ pool: db.pool, store: db.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
    await runner.start();
    issuer = await BuiltInIssuer.create({ db: db.db, issuer: "http://dv.test" });
    const bootstrap = await ensureBootstrap({ db: db.db, store: db.store, envSecret: null });
    if (bootstrap.position) await runner.waitForPosition(grantsProjection.name, bootstrap.position, 20_000);
    app = await buildServer({
      pool: db.pool,
      store: db.store,
      runner,
      auth: identityServerPlugin({
        db: db.db,
        store: db.store,
        issuer,
        awaitProjection: (position) => runner.waitForPosition(grantsProjection.name, position, 20_000),
      }),
      readYourWrites: { writeWaitMs: 20_000, readWaitMs: 20_000 },
    });
    const token = await app.inject({ method: "POST", url: "/v1/auth/token", payload: { grant_type: "bootstrap", secret: bootstrap.secret } });
    expect(token.statusCode, token.body).toBe(200);
    admin = token.json().access_token;
  });
  afterAll(async () => {
    await app?.close();
    await runner?.stop();
    await db?.dispose();
  });

  it("serves tenants to the token's subject by its granted roles, and files events under that subject", async () => {
    const created = await as(admin, { method: "POST", url: "/v1/tenants", payload: { name: "with-tokens" } });
    expect(created.statusCode, created.body).toBe(201);
    const tenant = created.json();
    const [event] = await db.store.readStream(`tenant-${tenant.id}`);
    expect(event?.actor).toEqual({ kind: "user", id: "bootstrap-admin" });

    // A valid token for someone with no roles: the tenant does not exist for them.
    const nobody = (await issuer.issue({ subject: "nobody", kind: "user" })).token;
    expect((await as(nobody, { method: "GET", url: `/v1/tenants/${tenant.id}` })).statusCode).toBe(404);
    expect((await as(nobody, { method: "POST", url: "/v1/tenants", payload: { name: "nope" } })).statusCode).toBe(403);
    expect((await as(nobody, { method: "GET", url: "/v1/tenants" })).json().items).toEqual([]);

    // No token: 401 from the API; a bad token: 401 from the plugin.
    const anonymous = await as(null, { method: "GET", url: `/v1/tenants/${tenant.id}` });
    expect([anonymous.statusCode, anonymous.json().code]).toEqual([401, "unauthenticated"]);
    const forged = await as(`${nobody.slice(0, -4)}AAAA`, { method: "GET", url: `/v1/tenants/${tenant.id}` });
    expect(forged.statusCode).toBe(401);
    expect(forged.headers["content-type"]).toMatch(/^application\/problem\+json/);

    // Granted tenant-admin of this tenant: sees it and administers it, but may not raise its own quota.
    const grant = await as(admin, {
      method: "POST",
      url: "/v1/role-grants",
      payload: { subject: "alice", subjectKind: "user", role: { role: "tenant-admin", tenantId: tenant.id } },
    });
    expect(grant.statusCode, grant.body).toBe(201);
    const alice = (await issuer.issue({ subject: "alice", kind: "user" })).token;
    expect((await as(alice, { method: "GET", url: `/v1/tenants/${tenant.id}` })).statusCode).toBe(200);
    const project = await as(alice, { method: "POST", url: `/v1/tenants/${tenant.id}/projects`, payload: { name: "web" } });
    expect(project.statusCode, project.body).toBe(201);
    expect((await db.store.readStream(`tenant-${tenant.id}`)).at(-1)?.actor).toEqual({ kind: "user", id: "alice" });
    expect((await as(alice, { method: "PUT", url: `/v1/tenants/${tenant.id}/quota`, payload: { limits: { vcpus: 1_000 } } })).statusCode).toBe(403);
    expect((await as(alice, { method: "GET", url: "/v1/tenants" })).json().items.map((t: { id: string }) => t.id)).toEqual([tenant.id]);
  });
});
