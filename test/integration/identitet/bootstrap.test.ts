import rateLimit from "@fastify/rate-limit";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BOOTSTRAP_SUBJECT, BootstrapSecretError, ensureBootstrap } from "../../../adapters/identity/bootstrap.ts";
import { BuiltInIssuer } from "../../../adapters/identity/issuer.ts";
import { identityServerPlugin } from "../../../api/auth/index.ts";
import { executeIdentityCommand } from "../../../commands/identitet/grants.ts";
import { allProjections, ProjectionRunner } from "../../../projections/index.ts";
import { rolesOf } from "../../../projections/identitet/grants.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";
import { expectProblem } from "./support.ts";

/**
 * The bootstrap credential with DV_BOOTSTRAP_SECRET, on its own database (it
 * revokes bootstrap-admin's grant), served through identityServerPlugin: the
 * `{ register(app) }` shape api/server.ts composes.
 */
const ENV_SECRET = "an operator-chosen secret, long enough";
let h: ProjectionHarness;
let runner: ProjectionRunner;
let app: FastifyInstance;

beforeAll(async () => {
  h = await createHarness();
  runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
  await runner.start();
  const issuer = await BuiltInIssuer.create({ db: h.db, issuer: "http://dv.test" });
  app = Fastify();
  await identityServerPlugin({
    db: h.db,
    store: h.store,
    issuer,
    awaitProjection: (position) => runner.waitForPosition("grants", position, 20_000),
  }).register(app);
  app.get("/sibling", async (request) => ({ actor: request.actor?.id ?? null }));
  await app.ready();
});
afterAll(async () => {
  await app?.close();
  await runner?.stop();
  await h?.dispose();
});

const exchange = (secret: string) => app.inject({ method: "POST", url: "/v1/auth/token", payload: { grant_type: "bootstrap", secret } });

describe("bootstrap with DV_BOOTSTRAP_SECRET", () => {
  it("refuses an env secret shorter than 16 characters before touching anything", async () => {
    await expect(ensureBootstrap({ db: h.db, store: h.store, envSecret: "short" })).rejects.toThrow(BootstrapSecretError);
    expect(await h.store.readStream(`identity-${BOOTSTRAP_SUBJECT}`)).toEqual([]);
  });

  it("stores the env secret (returning no secret to print) and grants once, even when instances start together", async () => {
    const results = await Promise.all([1, 2, 3].map(() => ensureBootstrap({ db: h.db, store: h.store, envSecret: ENV_SECRET })));
    expect(results.map((r) => r.secret)).toEqual([null, null, null]);
    expect(results.map((r) => r.state).sort()).toEqual(["existing", "existing", "from_env"]);
    expect(results.filter((r) => r.granted)).toHaveLength(1);
    expect((await h.store.readStream(`identity-${BOOTSTRAP_SUBJECT}`)).map((e) => e.type)).toEqual(["RoleGranted"]);
    await runner.waitForPosition("grants", results.find((r) => r.granted)!.position!, 20_000);
  });

  it("exchanges the env secret for a token; the actor is visible to sibling routes", async () => {
    const response = await exchange(ENV_SECRET);
    expect(response.statusCode, response.body).toBe(200);
    const token = response.json().access_token;
    const sibling = await app.inject({ method: "GET", url: "/sibling", headers: { authorization: `Bearer ${token}` } });
    expect(sibling.json()).toEqual({ actor: BOOTSTRAP_SUBJECT });
    expectProblem(await exchange(`${ENV_SECRET}!`), 401, "invalid_credentials");
  });

  it("replaces the stored secret when DV_BOOTSTRAP_SECRET changes (recovering a lost secret), so the old one stops working", async () => {
    const next = "a different operator secret";
    expect(await ensureBootstrap({ db: h.db, store: h.store, envSecret: next })).toMatchObject({ secret: null, state: "rotated_from_env", granted: false });
    expectProblem(await exchange(ENV_SECRET), 401, "invalid_credentials");
    expect((await exchange(next)).statusCode).toBe(200);
    expect(await ensureBootstrap({ db: h.db, store: h.store, envSecret: next })).toMatchObject({ state: "existing" });
    expect(await ensureBootstrap({ db: h.db, store: h.store })).toMatchObject({ state: "existing", secret: null });
  });

  it("does not grant platform-admin again after an operator revoked it: the credential stays disabled across restarts", async () => {
    const revoked = await executeIdentityCommand(
      h.store,
      { type: "RevokeRole", subject: BOOTSTRAP_SUBJECT, role: { role: "platform-admin" } },
      { actor: { kind: "user", id: "security-officer" }, correlationId: "c-revoke" },
    );
    await runner.waitForPosition("grants", revoked.position!, 20_000);
    expect(await ensureBootstrap({ db: h.db, store: h.store })).toMatchObject({ granted: false });
    expect((await h.store.readStream(`identity-${BOOTSTRAP_SUBJECT}`)).map((e) => e.type)).toEqual(["RoleGranted", "RoleRevoked"]);

    // The secret still yields a token, but one without any power. (Read the model directly: this instance
    // may hold bootstrap-admin's roles in its 5 s cache, since the revocation did not go through it.)
    expect((await exchange("a different operator secret")).statusCode).toBe(200);
    expect(await rolesOf(h.db, BOOTSTRAP_SUBJECT)).toEqual([]);
  });

  it("rate-limits the token exchange per client on top of the server's limit, right or wrong secret", async () => {
    const limited = Fastify();
    await limited.register(rateLimit, { global: true, max: 1000, timeWindow: "1 minute" });
    const issuer = await BuiltInIssuer.create({ db: h.db, issuer: "http://dv.test" });
    await identityServerPlugin({ db: h.db, store: h.store, issuer, tokenRateLimit: { max: 3, timeWindow: "1 minute" } }).register(limited);
    await limited.ready();
    try {
      const attempt = () => limited.inject({ method: "POST", url: "/v1/auth/token", payload: { grant_type: "bootstrap", secret: "guess-guess-guess" } });
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await attempt()).statusCode);
      expect(statuses).toEqual([401, 401, 401, 429]);
      // Other routes keep the server's limit.
      expect((await limited.inject({ method: "GET", url: "/v1/auth/config" })).statusCode).toBe(200);
    } finally {
      await limited.close();
    }
  });
});
