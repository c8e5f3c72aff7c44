import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBootstrap } from "../../../adapters/identity/bootstrap.ts";
import { OidcConfigError, OidcVerifier, oidcSettingsFromEnv } from "../../../adapters/identity/oidc.ts";
import { InvalidTokenError } from "../../../adapters/identity/port.ts";
import { authPlugin } from "../../../api/auth/plugin.ts";
import { createIdentityHarness, expectProblem, type IdentityHarness } from "./support.ts";

/**
 * OIDC bearer tokens verified through a real provider-shaped HTTP peer on
 * 127.0.0.1: a discovery document and a JWKS served by node:http, keys made
 * with jose. No mocks: the verifier fetches both over the network.
 */
const AUDIENCE = "dv-api";
const CLIENT_ID = "dv-cli";
let server: Server;
let issuerUrl: string;
let signingKey: CryptoKey;
let publicJwk: JWK;
const hits: string[] = [];
let h: IdentityHarness;
let admin: string;

beforeAll(async () => {
  const pair = await generateKeyPair("RS256");
  signingKey = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: "idp-key-1", alg: "RS256", use: "sig" };
  server = createServer((request, response) => {
    hits.push(request.url ?? "");
    const json = (body: unknown) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.url === "/.well-known/openid-configuration") {
      return json({
        issuer: issuerUrl,
        jwks_uri: `${issuerUrl}/oauth/v2/keys`,
        token_endpoint: `${issuerUrl}/oauth/v2/token`,
        device_authorization_endpoint: `${issuerUrl}/oauth/v2/device_authorization`,
      });
    }
    if (request.url === "/oauth/v2/keys") return json({ keys: [publicJwk] });
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  issuerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const oidc = new OidcVerifier({ issuer: issuerUrl, audience: AUDIENCE, clientId: CLIENT_ID });
  h = await createIdentityHarness({ oidc });
  const boot = await ensureBootstrap({ db: h.db, store: h.store });
  await h.runner.waitForPosition("grants", boot.position!, 20_000);
  await h.createTenant("t1");
  const exchanged = await h.request({ method: "POST", url: "/v1/auth/token", payload: { grant_type: "bootstrap", secret: boot.secret } });
  admin = exchanged.json().access_token;
});
afterAll(async () => {
  await h?.dispose();
  await new Promise((resolve) => server?.close(resolve));
});

function idpToken(claims: { sub?: string; aud?: string; iss?: string; expiresIn?: string | number; key?: CryptoKey; kid?: string; alg?: string } = {}) {
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: claims.alg ?? "RS256", kid: claims.kid ?? "idp-key-1" })
    .setIssuer(claims.iss ?? issuerUrl)
    .setAudience(claims.aud ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(claims.expiresIn ?? "1h");
  if (claims.sub !== undefined) jwt.setSubject(claims.sub);
  return jwt.sign(claims.key ?? signingKey);
}

describe("OIDC bearer tokens", () => {
  it("are verified through the provider's discovery document and JWKS; the subject carries the issuer's host", async () => {
    const token = await idpToken({ sub: "281937465" });
    const response = await h.request({ method: "GET", url: "/v1/auth/whoami", token });
    expect(response.statusCode, response.body).toBe(200);
    const host = new URL(issuerUrl).host;
    expect(response.json()).toEqual({ subject: `${host}:281937465`, kind: "user", issuer: issuerUrl, roles: [] });
    expect(hits).toContain("/.well-known/openid-configuration");
    expect(hits).toContain("/oauth/v2/keys");
  });

  it("get their roles from grants on the prefixed subject", async () => {
    const subject = `${new URL(issuerUrl).host}:ops-person`;
    const granted = await h.request({ method: "POST", url: "/v1/role-grants", token: admin, payload: { subject, subjectKind: "user", role: { role: "tenant-admin", tenantId: "t1" } } });
    expect(granted.statusCode, granted.body).toBe(201);
    const whoami = await h.request({ method: "GET", url: "/v1/auth/whoami", token: await idpToken({ sub: "ops-person" }) });
    expect(whoami.json()).toMatchObject({ subject, roles: [{ role: "tenant-admin", tenantId: "t1" }] });
  });

  it("cannot impersonate a built-in subject: sub bootstrap-admin from the provider has none of its roles", async () => {
    const whoami = await h.request({ method: "GET", url: "/v1/auth/whoami", token: await idpToken({ sub: "bootstrap-admin" }) });
    expect(whoami.json()).toMatchObject({ subject: `${new URL(issuerUrl).host}:bootstrap-admin`, roles: [] });
  });

  it("are refused (401 invalid_token) with another audience, expired, without sub, signed by another key, or with alg none", async () => {
    const stranger = (await generateKeyPair("RS256")).privateKey;
    const unsigned = [
      Buffer.from(JSON.stringify({ alg: "none", kid: "idp-key-1" })).toString("base64url"),
      Buffer.from(JSON.stringify({ iss: issuerUrl, aud: AUDIENCE, sub: "x", exp: Math.floor(Date.now() / 1000) + 3600 })).toString("base64url"),
      "",
    ].join(".");
    const cases: Array<[string, string]> = [
      [await idpToken({ sub: "a", aud: "someone-else" }), "aud"],
      [await idpToken({ sub: "a", expiresIn: Math.floor(Date.now() / 1000) - 120 }), "expired"],
      [await idpToken({}), "sub"],
      [await idpToken({ sub: "a", key: stranger }), "signature"],
      [await idpToken({ sub: "a", key: stranger, kid: "unknown-kid" }), "key"],
      [unsigned, "not valid"],
    ];
    for (const [token, why] of cases) {
      const response = await h.request({ method: "GET", url: "/v1/auth/whoami", token });
      const body = expectProblem(response, 401, "invalid_token");
      expect(body.detail as string, why).toMatch(new RegExp(why));
      expect(response.headers["www-authenticate"]).toMatch(/error="invalid_token"/);
    }
  });

  it("from an issuer that is neither built-in nor configured are refused", async () => {
    const token = await idpToken({ sub: "a", iss: "https://other-idp.example" });
    expectProblem(await h.request({ method: "GET", url: "/v1/auth/whoami", token }), 401, "invalid_token");
  });

  it("GET /v1/auth/config tells the CLI the provider's device-flow endpoints and client id", async () => {
    const response = await h.request({ method: "GET", url: "/v1/auth/config" });
    expect(response.json()).toMatchObject({
      issuer: "http://dv.test",
      oidc: {
        issuer: issuerUrl,
        clientId: CLIENT_ID,
        deviceAuthorizationEndpoint: `${issuerUrl}/oauth/v2/device_authorization`,
        tokenEndpoint: `${issuerUrl}/oauth/v2/token`,
      },
    });
  });
});

describe("OIDC configuration", () => {
  it("reads DV_OIDC_* and insists on an audience", () => {
    expect(oidcSettingsFromEnv({})).toBeNull();
    expect(oidcSettingsFromEnv({ DV_OIDC_ISSUER: "https://idp.example", DV_OIDC_CLIENT_ID: "cli" })).toEqual({
      issuer: "https://idp.example",
      audience: "cli",
      clientId: "cli",
    });
    expect(() => oidcSettingsFromEnv({ DV_OIDC_ISSUER: "https://idp.example" })).toThrow(OidcConfigError);
  });

  it("refuses plain http except on loopback", () => {
    expect(() => new OidcVerifier({ issuer: "http://idp.example", audience: "a", clientId: null })).toThrow(OidcConfigError);
    expect(new OidcVerifier({ issuer: "https://idp.example/realms/x", audience: "a", clientId: null }).subjectFor("u")).toBe("idp.example/realms/x:u");
  });

  it("reports an unreachable provider as unavailable (503 at the API), not as a bad token", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const verifier = new OidcVerifier({ issuer: url, audience: AUDIENCE, clientId: null });
    const error = await verifier.verify(await idpToken({ sub: "a", iss: url })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidTokenError);
    expect((error as InvalidTokenError).reason).toBe("unavailable");
    expect(await verifier.publicConfig()).toEqual({ issuer: url, clientId: null, deviceAuthorizationEndpoint: null, tokenEndpoint: null });
  });

  it("answers 503 identity_provider_unavailable at the API when the provider is down", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const app = Fastify();
    await app.register(authPlugin, { db: h.db, issuer: h.issuer, oidc: new OidcVerifier({ issuer: url, audience: AUDIENCE, clientId: null }) });
    app.get("/probe", async (request) => ({ actor: request.actor?.id ?? null }));
    try {
      const response = await app.inject({ method: "GET", url: "/probe", headers: { authorization: `Bearer ${await idpToken({ sub: "a", iss: url })}` } });
      expectProblem(response, 503, "identity_provider_unavailable");
      expect(response.headers["retry-after"]).toBe("5");
      // Built-in tokens do not depend on the provider.
      const own = await h.issuer.issue({ subject: "bootstrap-admin", kind: "user" });
      expect((await app.inject({ method: "GET", url: "/probe", headers: { authorization: `Bearer ${own.token}` } })).json()).toEqual({ actor: "bootstrap-admin" });
    } finally {
      await app.close();
    }
  });

  it("refuses a discovery document that names another issuer", async () => {
    const liar = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ issuer: "https://someone-else.example", jwks_uri: "https://someone-else.example/keys" }));
    });
    await new Promise<void>((resolve) => liar.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`;
      await expect(new OidcVerifier({ issuer: url, audience: AUDIENCE, clientId: null }).discover()).rejects.toThrow(/names issuer/);
    } finally {
      await new Promise((resolve) => liar.close(resolve));
    }
  });
});
