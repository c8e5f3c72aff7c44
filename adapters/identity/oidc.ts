import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from "jose";
import { z } from "zod";
import { InvalidTokenError, type TokenVerifier, type VerifiedToken } from "./port.ts";

/**
 * Bearer tokens from an external OpenID Connect provider (ZITADEL, Keycloak,
 * Dex, ...), verified offline against the provider's JWKS.
 *
 * - Discovery: `${issuer}/.well-known/openid-configuration` gives jwks_uri
 *   and, for the CLI's device flow, device_authorization_endpoint and
 *   token_endpoint. Fetched on first use, not at construction, so the API
 *   starts while the provider is down; a failed discovery is retried on the
 *   next request (at most every DISCOVERY_RETRY_MS).
 * - Keys: jose's remote JWK set (cached; re-fetched when a token names an
 *   unknown kid, at most every 30 s).
 * - Checks: signature (asymmetric algorithms only), iss equal to the
 *   discovered issuer, aud containing the configured audience, exp/nbf with
 *   a small clock tolerance, sub present.
 * - Subject: `<prefix><sub>`; the prefix defaults to the issuer's host (and
 *   path, if any) plus ':'. Built-in subjects never contain ':', so an OIDC
 *   user whose `sub` happens to be `bootstrap-admin` is not bootstrap-admin.
 *   Grants for OIDC users name the prefixed subject (`whoami` shows it).
 */

/** Asymmetric only: a provider's JWKS never holds shared secrets, and "none" or HS* must not pass. */
export const OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];
const DISCOVERY_TIMEOUT_MS = 5_000;
const DISCOVERY_RETRY_MS = 5_000;
const CLOCK_TOLERANCE_SECONDS = 30;

export interface OidcSettings {
  /** DV_OIDC_ISSUER: the provider's issuer URL, exactly as its discovery document states it. */
  readonly issuer: string;
  /** DV_OIDC_AUDIENCE: the `aud` tokens must carry (ZITADEL: the project id or the client id). */
  readonly audience: string;
  /** DV_OIDC_CLIENT_ID: the public client the CLI uses for the device flow; null when not offered. */
  readonly clientId: string | null;
  /** DV_OIDC_SUBJECT_PREFIX; default `<issuer host[/path]>:`. */
  readonly subjectPrefix?: string;
  /** Plain http issuers are refused unless on loopback (tests) or this is set. */
  readonly allowInsecureHttp?: boolean;
  /** Injected for tests. */
  readonly fetch?: typeof fetch;
  readonly now?: () => Date;
}

export interface OidcDiscovery {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly deviceAuthorizationEndpoint: string | null;
  readonly tokenEndpoint: string | null;
}

/** What GET /v1/auth/config tells the CLI about the provider. */
export interface OidcPublicConfig {
  readonly issuer: string;
  readonly clientId: string | null;
  readonly deviceAuthorizationEndpoint: string | null;
  readonly tokenEndpoint: string | null;
}

export class OidcConfigError extends Error {
  override readonly name = "OidcConfigError";
}

const DiscoverySchema = z.looseObject({
  issuer: z.string().min(1),
  jwks_uri: z.url(),
  device_authorization_endpoint: z.url().optional(),
  token_endpoint: z.url().optional(),
});

/** Reads DV_OIDC_ISSUER, DV_OIDC_AUDIENCE, DV_OIDC_CLIENT_ID, DV_OIDC_SUBJECT_PREFIX; null when no issuer is set. */
export function oidcSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): OidcSettings | null {
  const issuer = env.DV_OIDC_ISSUER?.trim();
  if (!issuer) return null;
  const clientId = env.DV_OIDC_CLIENT_ID?.trim() || null;
  const audience = env.DV_OIDC_AUDIENCE?.trim() || clientId;
  if (!audience) throw new OidcConfigError("DV_OIDC_ISSUER is set: set DV_OIDC_AUDIENCE (or DV_OIDC_CLIENT_ID) too");
  const prefix = env.DV_OIDC_SUBJECT_PREFIX;
  return { issuer, audience, clientId, ...(prefix !== undefined ? { subjectPrefix: prefix } : {}) };
}

/** Default subject prefix: `host[/path]:` of the issuer URL. */
export function defaultSubjectPrefix(issuer: string): string {
  const url = new URL(issuer);
  const path = url.pathname.replace(/\/+$/, "");
  return `${url.host}${path}:`;
}

export class OidcVerifier implements TokenVerifier {
  /** The configured issuer; tokens are checked against the discovered one (normally identical). */
  readonly issuer: string;
  readonly audience: string;
  readonly clientId: string | null;
  readonly subjectPrefix: string;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => Date;
  private discovered: { discovery: OidcDiscovery; keys: JWTVerifyGetKey } | null = null;
  private pending: Promise<{ discovery: OidcDiscovery; keys: JWTVerifyGetKey }> | null = null;
  private lastFailure: { at: number; error: Error } | null = null;

  constructor(settings: OidcSettings) {
    let url: URL;
    try {
      url = new URL(settings.issuer);
    } catch {
      throw new OidcConfigError(`DV_OIDC_ISSUER ${JSON.stringify(settings.issuer)} is not a URL`);
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && (isLoopback(url.hostname) || settings.allowInsecureHttp))) {
      throw new OidcConfigError(`DV_OIDC_ISSUER must be https (http only on loopback): ${settings.issuer}`);
    }
    if (!settings.audience) throw new OidcConfigError("an OIDC audience is required");
    this.issuer = settings.issuer;
    this.audience = settings.audience;
    this.clientId = settings.clientId;
    this.subjectPrefix = settings.subjectPrefix ?? defaultSubjectPrefix(settings.issuer);
    this.fetchImpl = settings.fetch ?? fetch;
    this.now = settings.now ?? (() => new Date());
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): OidcVerifier | null {
    const settings = oidcSettingsFromEnv(env);
    return settings ? new OidcVerifier(settings) : null;
  }

  /** The subject grants use for a token `sub` of this provider. */
  subjectFor(sub: string): string {
    return `${this.subjectPrefix}${sub}`;
  }

  /** Is this the issuer of a token whose (unverified) `iss` is `iss`? */
  accepts(iss: string): boolean {
    return trimSlash(iss) === trimSlash(this.issuer) || (this.discovered !== null && iss === this.discovered.discovery.issuer);
  }

  async discover(): Promise<OidcDiscovery> {
    return (await this.ready()).discovery;
  }

  async publicConfig(): Promise<OidcPublicConfig> {
    let discovery: OidcDiscovery | null = null;
    try {
      discovery = await this.discover();
    } catch {
      // Provider unreachable: still tell the CLI who it is; the endpoints come back once discovery works.
    }
    return {
      issuer: discovery?.issuer ?? this.issuer,
      clientId: this.clientId,
      deviceAuthorizationEndpoint: discovery?.deviceAuthorizationEndpoint ?? null,
      tokenEndpoint: discovery?.tokenEndpoint ?? null,
    };
  }

  async verify(token: string): Promise<VerifiedToken> {
    let ready: { discovery: OidcDiscovery; keys: JWTVerifyGetKey };
    try {
      ready = await this.ready();
    } catch (error) {
      throw new InvalidTokenError(`the identity provider ${this.issuer} cannot be reached to verify the token`, "unavailable", { cause: error });
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, ready.keys, {
        issuer: ready.discovery.issuer,
        audience: this.audience,
        algorithms: OIDC_ALGORITHMS,
        requiredClaims: ["sub", "exp"],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        currentDate: this.now(),
      }));
    } catch (error) {
      throw toInvalidToken(error);
    }
    const sub = payload.sub;
    if (typeof sub !== "string" || sub.length === 0) throw new InvalidTokenError("the token has no subject", "claims");
    return {
      subject: this.subjectFor(sub),
      kind: null,
      issuer: ready.discovery.issuer,
      expiresAt: new Date((payload.exp as number) * 1000),
      tokenId: typeof payload.jti === "string" ? payload.jti : null,
    };
  }

  private ready(): Promise<{ discovery: OidcDiscovery; keys: JWTVerifyGetKey }> {
    if (this.discovered) return Promise.resolve(this.discovered);
    if (this.pending) return this.pending;
    if (this.lastFailure && Date.now() - this.lastFailure.at < DISCOVERY_RETRY_MS) return Promise.reject(this.lastFailure.error);
    this.pending = this.fetchDiscovery()
      .then((discovery) => {
        this.discovered = { discovery, keys: createRemoteJWKSet(new URL(discovery.jwksUri), { timeoutDuration: DISCOVERY_TIMEOUT_MS }) };
        this.lastFailure = null;
        return this.discovered;
      })
      .catch((error: Error) => {
        this.lastFailure = { at: Date.now(), error };
        throw error;
      })
      .finally(() => {
        this.pending = null;
      });
    return this.pending;
  }

  private async fetchDiscovery(): Promise<OidcDiscovery> {
    const url = `${trimSlash(this.issuer)}/.well-known/openid-configuration`;
    const response = await this.fetchImpl(url, { signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS), headers: { accept: "application/json" } });
    if (!response.ok) throw new OidcConfigError(`OIDC discovery ${url} answered ${response.status}`);
    const parsed = DiscoverySchema.safeParse(await response.json());
    if (!parsed.success) throw new OidcConfigError(`OIDC discovery ${url} is not a discovery document: ${parsed.error.message}`);
    // OpenID Connect Discovery 1.0 §4.3: the document's issuer must be the one asked for.
    if (trimSlash(parsed.data.issuer) !== trimSlash(this.issuer)) {
      throw new OidcConfigError(`OIDC discovery ${url} names issuer ${parsed.data.issuer}, not ${this.issuer}`);
    }
    return {
      issuer: parsed.data.issuer,
      jwksUri: parsed.data.jwks_uri,
      deviceAuthorizationEndpoint: parsed.data.device_authorization_endpoint ?? null,
      tokenEndpoint: parsed.data.token_endpoint ?? null,
    };
  }
}

function trimSlash(value: string): string {
  return value.replace(/\/+$/, "");
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function toInvalidToken(error: unknown): InvalidTokenError {
  if (error instanceof joseErrors.JWTExpired) return new InvalidTokenError("the token has expired", "expired", { cause: error });
  if (error instanceof joseErrors.JWKSNoMatchingKey) {
    return new InvalidTokenError("the token was signed by a key the identity provider does not publish", "unknown_key", { cause: error });
  }
  // The key set could not be fetched: a timeout, a network error (fetch's TypeError), or a non-200 / non-JSON
  // answer (jose's generic JOSEError). The token may well be valid: "unavailable", not "invalid".
  if (error instanceof joseErrors.JWKSTimeout || !(error instanceof joseErrors.JOSEError) || error.code === "ERR_JOSE_GENERIC") {
    return new InvalidTokenError("the identity provider's keys could not be fetched", "unavailable", { cause: error });
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new InvalidTokenError("the token's signature does not verify", "signature", { cause: error });
  }
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return new InvalidTokenError(`the token's ${error.claim} claim is not acceptable: ${error.reason}`, "claims", { cause: error });
  }
  return new InvalidTokenError("the token is not valid", "malformed", { cause: error });
}
