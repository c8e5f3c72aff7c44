import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import {
  BuiltInIssuer,
  DEFAULT_TOKEN_TTL_SECONDS,
  generateSigningKeyPem,
  keyFromPkcs8,
  MAX_TOKEN_TTL_SECONDS,
  SigningKeyError,
  TOKEN_AUDIENCE,
} from "../../../adapters/identity/issuer.ts";
import { InvalidTokenError } from "../../../adapters/identity/port.ts";

const ISS = "https://dv.example.test";
let pem: string;
let otherPem: string;

beforeAll(async () => {
  [pem, otherPem] = await Promise.all([generateSigningKeyPem(), generateSigningKeyPem()]);
});

async function rejection(promise: Promise<unknown>): Promise<InvalidTokenError> {
  const error = await promise.then(
    () => {
      throw new Error("expected the token to be refused");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InvalidTokenError);
  return error as InvalidTokenError;
}

describe("built-in issuer", () => {
  it("signs EdDSA JWTs with iss, sub, aud, iat, exp (12 h default), jti, kind, and a kid header; verifies them", async () => {
    const issuer = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem });
    const issued = await issuer.issue({ subject: "svc-ci", kind: "service" });

    const header = decodeProtectedHeader(issued.token);
    expect(header).toEqual({ alg: "EdDSA", kid: issuer.keyId, typ: "JWT" });
    const claims = decodeJwt(issued.token);
    expect(claims).toEqual({
      iss: ISS,
      sub: "svc-ci",
      aud: TOKEN_AUDIENCE,
      iat: expect.any(Number),
      exp: (claims.iat as number) + DEFAULT_TOKEN_TTL_SECONDS,
      jti: issued.tokenId,
      kind: "service",
    });
    expect(claims).not.toHaveProperty("roles");
    expect(issued.expiresIn).toBe(12 * 3600);

    expect(await issuer.verify(issued.token)).toEqual({
      subject: "svc-ci",
      kind: "service",
      issuer: ISS,
      expiresAt: issued.expiresAt,
      tokenId: issued.tokenId,
    });
  });

  it("uses the RFC 7638 thumbprint as kid, the same for the same key, and publishes only public parts in the JWKS", async () => {
    const a = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem });
    const b = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem });
    expect(a.keyId).toBe(b.keyId);
    const { keys } = a.jwks();
    expect(keys).toHaveLength(1);
    expect(Object.keys(keys[0]!).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x"]);
    expect(keys[0]).toMatchObject({ kid: a.keyId, kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
  });

  it("refuses an expired token, with reason expired", async () => {
    const past = new Date(Date.now() - 13 * 3600 * 1000);
    const then = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem, now: () => past });
    const now = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem });
    const { token } = await then.issue({ subject: "ada", kind: "user" });
    expect(await then.verify(token)).toMatchObject({ subject: "ada" });
    expect((await rejection(now.verify(token))).reason).toBe("expired");
  });

  it("honours a short lifetime to the second (plus the small clock tolerance)", async () => {
    let clock = new Date("2026-05-01T12:00:00Z");
    const issuer = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem, now: () => clock, clockToleranceSeconds: 0 });
    const { token } = await issuer.issue({ subject: "ada", kind: "user", ttlSeconds: 60 });
    clock = new Date("2026-05-01T12:00:59Z");
    await expect(issuer.verify(token)).resolves.toMatchObject({ subject: "ada" });
    clock = new Date("2026-05-01T12:01:00Z");
    expect((await rejection(issuer.verify(token))).reason).toBe("expired");
  });

  it("refuses a token signed by another key (unknown kid), and one whose signature was made by another key under our kid", async () => {
    const ours = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem });
    const theirs = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: otherPem });
    const { token } = await theirs.issue({ subject: "ada", kind: "user" });
    expect((await rejection(ours.verify(token))).reason).toBe("unknown_key");

    // Forge: the other key signs, but the header names our kid.
    const forger = await keyFromPkcs8(otherPem);
    const forged = await new SignJWT({ kind: "user" })
      .setProtectedHeader({ alg: "EdDSA", kid: ours.keyId })
      .setIssuer(ISS)
      .setSubject("bootstrap-admin")
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime("1h")
      .setJti("x")
      .sign(forger.privateKey);
    expect((await rejection(ours.verify(forged))).reason).toBe("signature");
  });

  it("refuses a token of our key for another audience or another issuer", async () => {
    const issuer = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem });
    const key = await keyFromPkcs8(pem);
    const sign = (aud: string, iss: string) =>
      new SignJWT({ kind: "user" })
        .setProtectedHeader({ alg: "EdDSA", kid: issuer.keyId })
        .setIssuer(iss)
        .setSubject("ada")
        .setAudience(aud)
        .setIssuedAt()
        .setExpirationTime("1h")
        .setJti("j")
        .sign(key.privateKey);
    const wrongAudience = await rejection(issuer.verify(await sign("someone-else", ISS)));
    expect(wrongAudience.reason).toBe("claims");
    expect(wrongAudience.message).toMatch(/aud/);
    expect((await rejection(issuer.verify(await sign(TOKEN_AUDIENCE, "https://evil.example")))).reason).toBe("claims");
  });

  it("refuses a token without kind, a tampered payload, a non-EdDSA header and garbage", async () => {
    const issuer = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem });
    const key = await keyFromPkcs8(pem);
    const noKind = await new SignJWT({})
      .setProtectedHeader({ alg: "EdDSA", kid: issuer.keyId })
      .setIssuer(ISS)
      .setSubject("ada")
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime("1h")
      .setJti("j")
      .sign(key.privateKey);
    expect((await rejection(issuer.verify(noKind))).reason).toBe("claims");

    const { token } = await issuer.issue({ subject: "ada", kind: "user" });
    const [h, p, s] = token.split(".");
    const payload = JSON.parse(Buffer.from(p!, "base64url").toString());
    const tampered = [h, Buffer.from(JSON.stringify({ ...payload, sub: "bootstrap-admin" })).toString("base64url"), s].join(".");
    expect((await rejection(issuer.verify(tampered))).reason).toBe("signature");

    const hs = { alg: "HS256", kid: issuer.keyId };
    const hsToken = [Buffer.from(JSON.stringify(hs)).toString("base64url"), p, "AAAA"].join(".");
    expect((await rejection(issuer.verify(hsToken))).reason).toBe("malformed");
    expect((await rejection(issuer.verify("not-a-jwt"))).reason).toBe("malformed");
  });

  it("verifies tokens of extra published keys (the key before a rotation) and lists them in the JWKS", async () => {
    const old = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: otherPem });
    const oldPublic = old.jwks().keys[0]!;
    const current = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem, extraPublicKeys: [oldPublic] });
    expect(current.jwks().keys.map((k) => k.kid)).toEqual([current.keyId, old.keyId]);
    const { token } = await old.issue({ subject: "ada", kind: "user" });
    await expect(current.verify(token)).resolves.toMatchObject({ subject: "ada" });
  });

  it("refuses lifetimes outside 1 s .. 30 days and keys that are not Ed25519", async () => {
    const issuer = await BuiltInIssuer.fromPrivateKey({ issuer: ISS, privateKeyPem: pem });
    await expect(issuer.issue({ subject: "a", kind: "user", ttlSeconds: 0 })).rejects.toThrow(RangeError);
    await expect(issuer.issue({ subject: "a", kind: "user", ttlSeconds: MAX_TOKEN_TTL_SECONDS + 1 })).rejects.toThrow(RangeError);

    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const ecPem = await import("jose").then((j) => j.exportPKCS8(privateKey));
    await expect(keyFromPkcs8(ecPem)).rejects.toThrow(SigningKeyError);
    await expect(keyFromPkcs8("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")).rejects.toThrow(SigningKeyError);
    expect(await exportJWK((await keyFromPkcs8(pem)).publicKey)).toMatchObject({ crv: "Ed25519" });
  });
});
