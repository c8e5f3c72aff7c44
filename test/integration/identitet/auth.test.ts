import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, decodeJwt, jwtVerify } from "jose";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BOOTSTRAP_SUBJECT, ensureBootstrap } from "../../../adapters/identity/bootstrap.ts";
import { BuiltInIssuer, generateSigningKeyPem, keyFromPkcs8 } from "../../../adapters/identity/issuer.ts";
import { executeIdentityCommand } from "../../../commands/identitet/grants.ts";
import type { Role } from "../../../domain/identitet/roles.ts";
import { createIdentityHarness, expectProblem, ISSUER, until, type IdentityHarness } from "./support.ts";

let h: IdentityHarness;
let secret: string;
let admin: string;

beforeAll(async () => {
  h = await createIdentityHarness();
  const boot = await ensureBootstrap({ db: h.db, store: h.store, envSecret: undefined });
  secret = boot.secret!;
  await h.runner.waitForPosition("grants", boot.position!, 20_000);
  await h.createTenant("t1", ["p1"]);
  await h.createTenant("t2", ["p2"]);
  admin = await exchange(secret);
});
afterAll(async () => {
  await h?.dispose();
});

async function exchange(value: string): Promise<string> {
  const response = await h.request({ method: "POST", url: "/v1/auth/token", payload: { grant_type: "bootstrap", secret: value } });
  expect(response.statusCode, response.body).toBe(200);
  return response.json().access_token as string;
}

async function grant(token: string, subject: string, role: Role, subjectKind: "user" | "service" = "service") {
  return h.request({ method: "POST", url: "/v1/role-grants", token, payload: { subject, subjectKind, role } });
}

/** A service account holding `roles`, and a token for it minted by the bootstrap admin. */
async function serviceAccount(subject: string, ...roles: Role[]): Promise<string> {
  for (const role of roles) expect((await grant(admin, subject, role)).statusCode).toBe(201);
  const response = await h.request({ method: "POST", url: `/v1/service-accounts/${subject}/tokens`, token: admin });
  expect(response.statusCode, response.body).toBe(201);
  return response.json().access_token as string;
}

describe("bootstrap credential", () => {
  it("is generated once (32 bytes base64url), stored only as a scrypt hash, and granted platform-admin by an event", async () => {
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const again = await ensureBootstrap({ db: h.db, store: h.store });
    expect(again).toEqual({ secret: null, subject: BOOTSTRAP_SUBJECT, state: "existing", granted: false, position: null });

    const { rows } = await sql<{ secret_hash: string }>`select secret_hash from identitet.bootstrap`.execute(h.db);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.secret_hash).toMatch(/^scrypt\$/);
    expect(rows[0]!.secret_hash).not.toContain(secret);

    const events = await h.store.readStream(`identity-${BOOTSTRAP_SUBJECT}`);
    expect(events.map((e) => [e.type, e.data, e.actor])).toEqual([
      ["RoleGranted", { subject: BOOTSTRAP_SUBJECT, subjectKind: "user", role: { role: "platform-admin" } }, { kind: "system", id: "identitet-bootstrap" }],
    ]);
    expect(events[0]!.scope).toEqual({ tenantId: "platform" });
  });

  it("exchanges the secret for a bearer token of bootstrap-admin, not cached by intermediaries", async () => {
    const response = await h.request({ method: "POST", url: "/v1/auth/token", payload: { grant_type: "bootstrap", secret } });
    expect(response.statusCode).toBe(200);
    expect(response.headers["cache-control"]).toBe("no-store");
    const body = response.json();
    expect(body).toMatchObject({ token_type: "Bearer", expires_in: 12 * 3600, subject: BOOTSTRAP_SUBJECT });
    expect(decodeJwt(body.access_token)).toMatchObject({ iss: ISSUER, sub: BOOTSTRAP_SUBJECT, aud: "dataverket", kind: "user" });

    const whoami = await h.request({ method: "GET", url: "/v1/auth/whoami", token: body.access_token });
    expect(whoami.statusCode).toBe(200);
    expect(whoami.json()).toEqual({ subject: BOOTSTRAP_SUBJECT, kind: "user", issuer: ISSUER, roles: [{ role: "platform-admin" }] });
  });

  it("refuses a wrong secret with 401 problem+json and no token", async () => {
    for (const wrong of [secret.slice(0, -1), `${secret}x`, "x"]) {
      const response = await h.request({ method: "POST", url: "/v1/auth/token", payload: { grant_type: "bootstrap", secret: wrong } });
      const body = expectProblem(response, 401, "invalid_credentials");
      expect(body).not.toHaveProperty("access_token");
    }
  });

  it("validates the token request at the edge, naming every failing field", async () => {
    const response = await h.request({ method: "POST", url: "/v1/auth/token", payload: { grant_type: "password", secret: "", extra: 1 } });
    const body = expectProblem(response, 400, "validation_failed");
    expect((body.errors as Array<{ path: string }>).map((e) => e.path).sort()).toEqual(["extra", "grant_type", "secret"]);
    expectProblem(await h.request({ method: "POST", url: "/v1/auth/token", headers: { "content-type": "application/json" }, payload: "{" }), 400, "malformed_body");
  });
});

describe("authentication", () => {
  it("treats a request without Authorization (or with another scheme) as anonymous: 401 unauthenticated where an actor is needed", async () => {
    for (const headers of [{}, { authorization: "Basic YWRhOnNlY3JldA==" }]) {
      const response = await h.request({ method: "GET", url: "/v1/auth/whoami", headers });
      expectProblem(response, 401, "unauthenticated");
      expect(response.headers["www-authenticate"]).toBe('Bearer realm="dataverket"');
    }
  });

  it("answers an expired token with 401 invalid_token and the RFC 6750 challenge", async () => {
    const past = new Date(Date.now() - 13 * 3600 * 1000);
    const yesterday = await BuiltInIssuer.create({ db: h.db, issuer: ISSUER, now: () => past });
    expect(yesterday.keyId).toBe(h.issuer.keyId);
    const { token } = await yesterday.issue({ subject: BOOTSTRAP_SUBJECT, kind: "user" });
    const response = await h.request({ method: "GET", url: "/v1/auth/whoami", token });
    const body = expectProblem(response, 401, "invalid_token");
    expect(body.detail).toMatch(/expired/);
    expect(response.headers["www-authenticate"]).toMatch(/^Bearer realm="dataverket", error="invalid_token", error_description="[^"]*expired[^"]*"$/);
  });

  it("answers 401 invalid_token for garbage, an empty bearer, a forged signature and a foreign issuer, on any route", async () => {
    const other = await BuiltInIssuer.fromPrivateKey({ issuer: ISSUER, privateKeyPem: await generateSigningKeyPem() });
    const foreign = await BuiltInIssuer.fromPrivateKey({ issuer: "https://elsewhere.example", privateKeyPem: await generateSigningKeyPem() });
    const tokens = [
      "garbage",
      (await other.issue({ subject: BOOTSTRAP_SUBJECT, kind: "user" })).token,
      (await foreign.issue({ subject: BOOTSTRAP_SUBJECT, kind: "user" })).token,
    ];
    for (const token of tokens) {
      const response = await h.request({ method: "GET", url: "/v1/auth/config", token });
      expectProblem(response, 401, "invalid_token");
      expect(response.headers["www-authenticate"]).toMatch(/error="invalid_token"/);
    }
    expectProblem(await h.request({ method: "GET", url: "/v1/auth/whoami", headers: { authorization: "Bearer " } }), 401, "invalid_token");
  });

  it("publishes the signing key in the JWKS, and a client can verify tokens with it alone", async () => {
    const response = await h.request({ method: "GET", url: "/.well-known/jwks.json" });
    expect(response.statusCode).toBe(200);
    const jwks = response.json();
    expect(jwks.keys.map((k: { kid: string }) => k.kid)).toContain(h.issuer.keyId);
    expect(JSON.stringify(jwks)).not.toMatch(/"d"/);
    const { payload } = await jwtVerify(admin, createLocalJWKSet(jwks), { issuer: ISSUER, audience: "dataverket" });
    expect(payload.sub).toBe(BOOTSTRAP_SUBJECT);
  });

  it("keeps the generated key across restarts; DV_SIGNING_KEY_FILE overrides it for signing without storing it", async () => {
    const restarted = await BuiltInIssuer.create({ db: h.db, issuer: ISSUER });
    expect(restarted.keyId).toBe(h.issuer.keyId);
    expect(restarted.keySource).toBe("database");
    await expect(restarted.verify(admin)).resolves.toMatchObject({ subject: BOOTSTRAP_SUBJECT });

    const dir = await mkdtemp(join(tmpdir(), "dv-key-"));
    try {
      const pem = await generateSigningKeyPem();
      await writeFile(join(dir, "signing.pem"), pem, { mode: 0o600 });
      const fromFile = await BuiltInIssuer.create({ db: h.db, issuer: ISSUER, keyFile: join(dir, "signing.pem") });
      expect(fromFile.keySource).toBe("file");
      expect(fromFile.keyId).toBe((await keyFromPkcs8(pem)).kid);
      // The stored key still verifies tokens signed before the switch; the file key is not written to the database.
      expect(fromFile.jwks().keys.map((k) => k.kid)).toEqual([fromFile.keyId, h.issuer.keyId]);
      await expect(fromFile.verify(admin)).resolves.toMatchObject({ subject: BOOTSTRAP_SUBJECT });
      const { rows } = await sql<{ kid: string }>`select kid from identitet.signing_keys`.execute(h.db);
      expect(rows.map((r) => r.kid)).toEqual([h.issuer.keyId]);
      await expect(BuiltInIssuer.create({ db: h.db, issuer: ISSUER, keyFile: join(dir, "missing.pem") })).rejects.toThrow(/DV_SIGNING_KEY_FILE/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("tells the CLI the built-in issuer and that no OIDC provider is configured", async () => {
    const response = await h.request({ method: "GET", url: "/v1/auth/config" });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ issuer: ISSUER, oidc: null });
  });
});

describe("service-account tokens", () => {
  it("are issued by a platform-admin for a service account, carry kind service, and its roles come from grants", async () => {
    const token = await serviceAccount("svc-reader", { role: "auditor", tenantId: "t1" });
    expect(decodeJwt(token)).toMatchObject({ sub: "svc-reader", kind: "service" });
    const whoami = await h.request({ method: "GET", url: "/v1/auth/whoami", token });
    expect(whoami.json()).toEqual({ subject: "svc-reader", kind: "service", issuer: ISSUER, roles: [{ role: "auditor", tenantId: "t1" }] });
  });

  it("honour a requested lifetime within bounds", async () => {
    await grant(admin, "svc-short", { role: "auditor", tenantId: "t1" });
    const ok = await h.request({ method: "POST", url: "/v1/service-accounts/svc-short/tokens", token: admin, payload: { expiresInSeconds: 600 } });
    expect(ok.json().expires_in).toBe(600);
    const tooLong = await h.request({ method: "POST", url: "/v1/service-accounts/svc-short/tokens", token: admin, payload: { expiresInSeconds: 10 ** 9 } });
    expectProblem(tooLong, 400, "validation_failed");
  });

  it("are refused to anyone but a platform-admin, and for users or unknown subjects", async () => {
    const tenantAdmin = await serviceAccount("svc-t1-admin-a", { role: "tenant-admin", tenantId: "t1" });
    expectProblem(await h.request({ method: "POST", url: "/v1/service-accounts/svc-reader/tokens", token: tenantAdmin }), 403, "forbidden");
    expectProblem(await h.request({ method: "POST", url: "/v1/service-accounts/svc-reader/tokens" }), 401, "unauthenticated");
    expectProblem(await h.request({ method: "POST", url: "/v1/service-accounts/nobody/tokens", token: admin }), 404, "service_account_not_found");
    expectProblem(await h.request({ method: "POST", url: `/v1/service-accounts/${BOOTSTRAP_SUBJECT}/tokens`, token: admin }), 404, "service_account_not_found");
  });
});

describe("role grants", () => {
  it("grants idempotently: 201 when granted, 200 when already held", async () => {
    const first = await grant(admin, "svc-idem", { role: "auditor", tenantId: "t2" });
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ subject: "svc-idem", subjectKind: "service", role: { role: "auditor", tenantId: "t2" }, changed: true });
    const again = await grant(admin, "svc-idem", { role: "auditor", tenantId: "t2" });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ changed: false });
    expectProblem(await grant(admin, "svc-idem", { role: "auditor", tenantId: "t1" }, "user"), 409, "subject_kind_mismatch");
  });

  it("validates the body, listing every failing field", async () => {
    const response = await h.request({
      method: "POST",
      url: "/v1/role-grants",
      token: admin,
      payload: { subject: "has space", subjectKind: "robot", role: { role: "platform-admin", tenantId: "t1" } },
    });
    const body = expectProblem(response, 400, "validation_failed");
    expect((body.errors as Array<{ path: string; in: string }>).map((e) => e.path).sort()).toEqual(["role.tenantId", "subject", "subjectKind"]);
  });

  it("refuses grants on a tenant or project that does not exist (404)", async () => {
    expectProblem(await grant(admin, "svc-x", { role: "tenant-admin", tenantId: "t-none" }), 404, "tenant_not_found");
    expectProblem(await grant(admin, "svc-x", { role: "project-member", tenantId: "t1", projectId: "p-none" }), 404, "project_not_found");
  });

  it("lets a tenant-admin grant tenant roles in their tenant, but not platform roles (403) and nothing in another tenant (404, as if it did not exist)", async () => {
    const t1Admin = await serviceAccount("svc-t1-admin", { role: "tenant-admin", tenantId: "t1" });
    expect((await grant(t1Admin, "svc-t1-dev", { role: "project-member", tenantId: "t1", projectId: "p1" })).statusCode).toBe(201);
    expect((await grant(t1Admin, "svc-t1-audit", { role: "auditor", tenantId: "t1" })).statusCode).toBe(201);
    expect((await grant(t1Admin, "svc-t1-admin2", { role: "tenant-admin", tenantId: "t1" })).statusCode).toBe(201);

    expectProblem(await grant(t1Admin, "svc-t1-admin", { role: "platform-admin" }), 403, "forbidden");
    expectProblem(await grant(t1Admin, "svc-t1-admin", { role: "auditor" }), 403, "forbidden");

    // t2 exists, t-ghost does not: the answers must not tell them apart.
    const existing = expectProblem(await grant(t1Admin, "svc-t1-admin", { role: "tenant-admin", tenantId: "t2" }), 404, "tenant_not_found");
    const missing = expectProblem(await grant(t1Admin, "svc-t1-admin", { role: "tenant-admin", tenantId: "t-ghost" }), 404, "tenant_not_found");
    const strip = (body: Record<string, unknown>) => JSON.stringify({ ...body, correlationId: undefined }).replaceAll("t-ghost", "t2");
    expect(strip(missing)).toBe(strip(existing));
    expectProblem(await grant(t1Admin, "svc-x", { role: "project-member", tenantId: "t2", projectId: "p2" }), 404, "tenant_not_found");
    const revokeElsewhere = await h.request({
      method: "DELETE",
      url: "/v1/role-grants",
      token: t1Admin,
      payload: { subject: "svc-idem", role: { role: "auditor", tenantId: "t2" } },
    });
    expectProblem(revokeElsewhere, 404, "tenant_not_found");
    expect((await h.store.readStream("identity-svc-idem")).map((e) => e.type)).toEqual(["RoleGranted"]);
  });

  it("lists grants scoped to what the caller administers or audits", async () => {
    const t1Admin = await serviceAccount("svc-t1-lister", { role: "tenant-admin", tenantId: "t1" });
    const listed = await h.request({ method: "GET", url: "/v1/role-grants", token: t1Admin });
    expect(listed.statusCode).toBe(200);
    const items = listed.json().items as Array<{ subject: string; role: Role }>;
    expect(items.length).toBeGreaterThan(0);
    expect(items.every((g) => "tenantId" in g.role && g.role.tenantId === "t1")).toBe(true);

    expectProblem(await h.request({ method: "GET", url: "/v1/role-grants?tenantId=t2", token: t1Admin }), 404, "tenant_not_found");
    const member = await serviceAccount("svc-p1-member", { role: "project-member", tenantId: "t1", projectId: "p1" });
    expectProblem(await h.request({ method: "GET", url: "/v1/role-grants?tenantId=t1", token: member }), 403, "forbidden");
    expect((await h.request({ method: "GET", url: "/v1/role-grants", token: member })).json()).toEqual({ items: [], nextCursor: null });

    const all = await h.request({ method: "GET", url: `/v1/role-grants?subject=${BOOTSTRAP_SUBJECT}`, token: admin });
    expect(all.json().items).toEqual([
      { subject: BOOTSTRAP_SUBJECT, subjectKind: "user", role: { role: "platform-admin" }, grantedAt: expect.any(String), grantedBy: "system:identitet-bootstrap" },
    ]);
  });

  it("pages with an opaque cursor that cannot be forged into another list", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/role-grants?limit=3${cursor ? `&cursor=${cursor}` : ""}`;
      const page = await h.request({ method: "GET", url, token: admin });
      expect(page.statusCode, page.body).toBe(200);
      const body = page.json() as { items: Array<{ subject: string; role: Role }>; nextCursor: string | null };
      seen.push(...body.items.map((g) => `${g.subject} ${JSON.stringify(g.role)}`));
      cursor = body.nextCursor;
    } while (cursor);
    const whole = await h.request({ method: "GET", url: "/v1/role-grants?limit=200", token: admin });
    expect(seen).toEqual(whole.json().items.map((g: { subject: string; role: Role }) => `${g.subject} ${JSON.stringify(g.role)}`));
    expectProblem(await h.request({ method: "GET", url: "/v1/role-grants?cursor=bm9wZQ", token: admin }), 400, "invalid_cursor");
  });
});

describe("revocation", () => {
  it("revoked through the API: the very next request of the grantee has lost the role", async () => {
    const token = await serviceAccount("svc-revoked-here", { role: "tenant-admin", tenantId: "t1" });
    expect((await h.request({ method: "GET", url: "/v1/role-grants?tenantId=t1", token })).statusCode).toBe(200);

    const revoked = await h.request({
      method: "DELETE",
      url: "/v1/role-grants",
      token: admin,
      payload: { subject: "svc-revoked-here", role: { role: "tenant-admin", tenantId: "t1" } },
    });
    expect(revoked.statusCode).toBe(200);
    expect(revoked.json()).toMatchObject({ changed: true });
    expectProblem(await h.request({ method: "GET", url: "/v1/role-grants?tenantId=t1", token }), 404, "tenant_not_found");
    expect((await h.request({ method: "GET", url: "/v1/auth/whoami", token })).json().roles).toEqual([]);
    const again = await h.request({
      method: "DELETE",
      url: "/v1/role-grants",
      token: admin,
      payload: { subject: "svc-revoked-here", role: { role: "tenant-admin", tenantId: "t1" } },
    });
    expect(again.json()).toMatchObject({ changed: false });
  });

  it("revoked elsewhere (another instance, a saga): stops working within the 5 s role cache window", async () => {
    const token = await serviceAccount("svc-revoked-elsewhere", { role: "tenant-admin", tenantId: "t1" });
    // Warm the cache: this instance now holds the roles for up to 5 s.
    expect((await h.request({ method: "GET", url: "/v1/role-grants?tenantId=t1", token })).statusCode).toBe(200);

    const result = await executeIdentityCommand(
      h.store,
      { type: "RevokeRole", subject: "svc-revoked-elsewhere", role: { role: "tenant-admin", tenantId: "t1" } },
      { actor: { kind: "user", id: "another-instance" }, correlationId: "c-elsewhere" },
    );
    await h.runner.waitForPosition("grants", result.position!, 20_000);
    const waited = await until(async () => (await h.request({ method: "GET", url: "/v1/role-grants?tenantId=t1", token })).statusCode === 404, 7_000);
    expect(waited).toBeLessThanOrEqual(5_000 + 500);
  });
});
