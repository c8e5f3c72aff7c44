import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  errors as joseErrors,
  exportJWK,
  exportPKCS8,
  generateKeyPair,
  importJWK,
  importPKCS8,
  jwtVerify,
  SignJWT,
  type CryptoKey,
  type JWK,
} from "jose";
import { sql, type Kysely } from "kysely";
import { InvalidTokenError, type TokenVerifier, type VerifiedToken } from "./port.ts";

/**
 * The built-in token issuer: EdDSA (Ed25519) JWTs.
 *
 * Claims: iss (this issuer), sub, aud "dataverket", iat, exp, jti, and
 * `kind` (user | service). No roles: the API reads them from the grants read
 * model per request, so revoking a role works at once, not at token expiry.
 *
 * Keys: with `keyFile` (DV_SIGNING_KEY_FILE, a PKCS#8 PEM Ed25519 private key)
 * that key signs and is never written anywhere. Without it, the newest
 * non-retired key in `identitet.signing_keys` signs; on first start one is
 * generated and stored there (under an advisory lock, so instances starting
 * together agree on one key). Every non-retired stored key (and the file key)
 * verifies tokens and is published in the JWKS, so tokens signed before a
 * rotation keep working until the old key is retired.
 */

export const TOKEN_AUDIENCE = "dataverket";
export const SIGNING_ALGORITHM = "EdDSA";
export const DEFAULT_TOKEN_TTL_SECONDS = 12 * 60 * 60;
/** Upper bound for any token this issuer mints (service-account tokens may ask for more than the default). */
export const MAX_TOKEN_TTL_SECONDS = 30 * 24 * 60 * 60;
const DEFAULT_CLOCK_TOLERANCE_SECONDS = 5;
/** A token with a kid we do not know makes us re-read the stored keys (another instance rotated), at most this often. */
const KEY_RELOAD_INTERVAL_MS = 10_000;
/** pg_advisory_xact_lock key for generating the first signing key. */
const KEY_LOCK = 0x1de7_0001;

export type TokenKind = "user" | "service";

export interface IssueRequest {
  readonly subject: string;
  readonly kind: TokenKind;
  /** Lifetime; default the issuer's tokenTtlSeconds, at most MAX_TOKEN_TTL_SECONDS. */
  readonly ttlSeconds?: number;
}

export interface IssuedToken {
  readonly token: string;
  readonly tokenId: string;
  readonly subject: string;
  readonly kind: TokenKind;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
  /** Seconds from issue to expiry (the OAuth `expires_in`). */
  readonly expiresIn: number;
}

/** A public key as published in the JWKS. */
export interface PublicJwk extends JWK {
  readonly kid: string;
  readonly kty: string;
  readonly crv: string;
  readonly x: string;
  readonly alg: "EdDSA";
  readonly use: "sig";
}

interface KeyEntry {
  readonly kid: string;
  readonly publicKey: CryptoKey;
  readonly jwk: PublicJwk;
}

interface SigningKey extends KeyEntry {
  readonly privateKey: CryptoKey;
  readonly source: "file" | "database" | "memory";
}

export interface BuiltInIssuerOptions {
  /** The `iss` claim: the API's public base URL is the natural value (DV_ISSUER). */
  readonly issuer: string;
  /** Default lifetime of issued tokens (default 12 h). */
  readonly tokenTtlSeconds?: number;
  readonly clockToleranceSeconds?: number;
  /** The clock (tests). */
  readonly now?: () => Date;
}

export interface CreateIssuerOptions extends BuiltInIssuerOptions {
  readonly db: Kysely<any>;
  /** DV_SIGNING_KEY_FILE: PKCS#8 PEM of an Ed25519 key; overrides the stored key for signing. */
  readonly keyFile?: string | null;
}

export class SigningKeyError extends Error {
  override readonly name = "SigningKeyError";
}

export class BuiltInIssuer implements TokenVerifier {
  readonly issuer: string;
  readonly audience = TOKEN_AUDIENCE;
  readonly tokenTtlSeconds: number;
  private readonly clockTolerance: number;
  private readonly now: () => Date;
  private readonly signing: SigningKey;
  private verification: ReadonlyMap<string, KeyEntry>;
  private readonly reload: (() => Promise<KeyEntry[]>) | null;
  private lastReload = 0;

  private constructor(
    options: BuiltInIssuerOptions,
    signing: SigningKey,
    others: readonly KeyEntry[],
    reload: (() => Promise<KeyEntry[]>) | null,
  ) {
    if (!options.issuer.trim()) throw new TypeError("the issuer (iss) must not be empty");
    const ttl = options.tokenTtlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    checkTtl(ttl);
    this.issuer = options.issuer;
    this.tokenTtlSeconds = ttl;
    this.clockTolerance = options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
    this.now = options.now ?? (() => new Date());
    this.signing = signing;
    this.verification = keyMap(signing, others);
    this.reload = reload;
  }

  /**
   * The production constructor: signs with the key file when given, else with
   * the stored key (generating and storing one on first start).
   */
  static async create(options: CreateIssuerOptions): Promise<BuiltInIssuer> {
    const keyFile = options.keyFile?.trim() ? options.keyFile.trim() : null;
    const signing = keyFile ? await readKeyFile(keyFile) : await ensureStoredSigningKey(options.db);
    const stored = await loadStoredKeys(options.db);
    return new BuiltInIssuer(options, signing, stored, () => loadStoredKeys(options.db));
  }

  /** An issuer over a PKCS#8 PEM key held in memory, with no database (tests, tools). */
  static async fromPrivateKey(options: BuiltInIssuerOptions & { privateKeyPem: string; extraPublicKeys?: readonly JWK[] }): Promise<BuiltInIssuer> {
    const signing = { ...(await keyFromPkcs8(options.privateKeyPem)), source: "memory" as const };
    const others = await Promise.all((options.extraPublicKeys ?? []).map(publicEntry));
    return new BuiltInIssuer(options, signing, others, null);
  }

  /** The kid that signs new tokens. */
  get keyId(): string {
    return this.signing.kid;
  }

  /** Where the signing key came from: DV_SIGNING_KEY_FILE, the database, or memory (tests). */
  get keySource(): "file" | "database" | "memory" {
    return this.signing.source;
  }

  async issue(request: IssueRequest): Promise<IssuedToken> {
    const ttl = request.ttlSeconds ?? this.tokenTtlSeconds;
    checkTtl(ttl);
    if (!request.subject) throw new TypeError("a token needs a subject");
    if (request.kind !== "user" && request.kind !== "service") throw new TypeError(`unknown token kind ${String(request.kind)}`);
    const iat = Math.floor(this.now().getTime() / 1000);
    const exp = iat + ttl;
    const tokenId = randomUUID();
    const token = await new SignJWT({ kind: request.kind })
      .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid: this.signing.kid, typ: "JWT" })
      .setIssuer(this.issuer)
      .setSubject(request.subject)
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(tokenId)
      .sign(this.signing.privateKey);
    return {
      token,
      tokenId,
      subject: request.subject,
      kind: request.kind,
      issuedAt: new Date(iat * 1000),
      expiresAt: new Date(exp * 1000),
      expiresIn: ttl,
    };
  }

  async verify(token: string): Promise<VerifiedToken> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch (error) {
      throw new InvalidTokenError("the token is not a JWT", "malformed", { cause: error });
    }
    if (header.alg !== SIGNING_ALGORITHM) throw new InvalidTokenError(`tokens of this issuer are signed with EdDSA, not ${String(header.alg)}`, "malformed");
    if (typeof header.kid !== "string") throw new InvalidTokenError("the token names no key (kid)", "malformed");
    const key = await this.keyFor(header.kid);
    if (!key) throw new InvalidTokenError("the token was signed by a key this issuer does not (or no longer) use", "unknown_key");

    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, key.publicKey, {
        issuer: this.issuer,
        audience: TOKEN_AUDIENCE,
        algorithms: [SIGNING_ALGORITHM],
        requiredClaims: ["sub", "iat", "exp", "jti"],
        clockTolerance: this.clockTolerance,
        currentDate: this.now(),
      }));
    } catch (error) {
      throw toInvalidToken(error);
    }
    const kind = payload.kind;
    if (kind !== "user" && kind !== "service") throw new InvalidTokenError("the token's kind claim is not user or service", "claims");
    return {
      subject: payload.sub as string,
      kind,
      issuer: this.issuer,
      expiresAt: new Date((payload.exp as number) * 1000),
      tokenId: payload.jti as string,
    };
  }

  /** GET /.well-known/jwks.json: every key that verifies tokens, signing key first. */
  jwks(): { keys: PublicJwk[] } {
    return { keys: [...this.verification.values()].map((entry) => entry.jwk) };
  }

  /** Re-reads the stored keys (after a rotation or retirement by another instance or an operator). */
  async refreshKeys(): Promise<void> {
    if (!this.reload) return;
    this.lastReload = Date.now();
    this.verification = keyMap(this.signing, await this.reload());
  }

  private async keyFor(kid: string): Promise<KeyEntry | undefined> {
    const known = this.verification.get(kid);
    if (known || !this.reload || Date.now() - this.lastReload < KEY_RELOAD_INTERVAL_MS) return known;
    await this.refreshKeys();
    return this.verification.get(kid);
  }
}

function keyMap(signing: KeyEntry, others: readonly KeyEntry[]): ReadonlyMap<string, KeyEntry> {
  const map = new Map<string, KeyEntry>([[signing.kid, signing]]);
  for (const entry of others) if (!map.has(entry.kid)) map.set(entry.kid, entry);
  return map;
}

function checkTtl(ttl: number): void {
  if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw new RangeError(`token lifetime must be 1-${MAX_TOKEN_TTL_SECONDS} seconds, got ${ttl}`);
  }
}

function toInvalidToken(error: unknown): InvalidTokenError {
  if (error instanceof joseErrors.JWTExpired) return new InvalidTokenError("the token has expired", "expired", { cause: error });
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new InvalidTokenError("the token's signature does not verify", "signature", { cause: error });
  }
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return new InvalidTokenError(`the token's ${error.claim} claim is not acceptable: ${error.reason}`, "claims", { cause: error });
  }
  return new InvalidTokenError("the token is not valid", "malformed", { cause: error });
}

// ---------------------------------------------------------------------------
// Keys

/** A PKCS#8 PEM Ed25519 private key, with its public JWK and RFC 7638 thumbprint as kid. */
export async function keyFromPkcs8(pem: string): Promise<Omit<SigningKey, "source">> {
  let privateKey: CryptoKey;
  try {
    privateKey = await importPKCS8(pem, SIGNING_ALGORITHM, { extractable: true });
  } catch (error) {
    throw new SigningKeyError(`not a PKCS#8 PEM Ed25519 private key: ${(error as Error).message}`, { cause: error });
  }
  const full = await exportJWK(privateKey);
  if (full.kty !== "OKP" || full.crv !== "Ed25519" || !full.x) {
    throw new SigningKeyError(`the signing key must be Ed25519, got ${full.kty}/${full.crv ?? "?"}`);
  }
  const entry = await publicEntry({ kty: full.kty, crv: full.crv, x: full.x });
  return { ...entry, privateKey };
}

async function publicEntry(jwk: JWK): Promise<KeyEntry> {
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
    throw new SigningKeyError("a verification key must be an Ed25519 public JWK");
  }
  const bare = { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  const kid = await calculateJwkThumbprint(bare, "sha256");
  const publicKey = (await importJWK(bare, SIGNING_ALGORITHM)) as CryptoKey;
  return { kid, publicKey, jwk: { ...bare, kid, alg: SIGNING_ALGORITHM, use: "sig" } };
}

/** A new Ed25519 key pair as PKCS#8 PEM (what DV_SIGNING_KEY_FILE holds; `openssl genpkey -algorithm ed25519` makes the same). */
export async function generateSigningKeyPem(): Promise<string> {
  const { privateKey } = await generateKeyPair(SIGNING_ALGORITHM, { crv: "Ed25519", extractable: true });
  return exportPKCS8(privateKey);
}

async function readKeyFile(path: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readFile(path, "utf8");
  } catch (error) {
    throw new SigningKeyError(`cannot read DV_SIGNING_KEY_FILE ${path}: ${(error as Error).message}`, { cause: error });
  }
  return { ...(await keyFromPkcs8(pem)), source: "file" };
}

interface SigningKeyRow {
  kid: string;
  public_jwk: JWK;
  private_pkcs8: string;
}

/** The newest non-retired stored key; generates and stores one when there is none. */
async function ensureStoredSigningKey(db: Kysely<any>): Promise<SigningKey> {
  const row = await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${KEY_LOCK})`.execute(trx);
    const existing = await sql<SigningKeyRow>`select kid, public_jwk, private_pkcs8 from identitet.signing_keys
      where retired_at is null order by created_at desc, kid desc limit 1`.execute(trx);
    if (existing.rows[0]) return existing.rows[0];
    const pem = await generateSigningKeyPem();
    const key = await keyFromPkcs8(pem);
    const publicJwk = { kty: key.jwk.kty, crv: key.jwk.crv, x: key.jwk.x };
    await sql`insert into identitet.signing_keys (kid, public_jwk, private_pkcs8)
      values (${key.kid}, ${JSON.stringify(publicJwk)}::jsonb, ${pem})`.execute(trx);
    return { kid: key.kid, public_jwk: publicJwk, private_pkcs8: pem };
  });
  const key = await keyFromPkcs8(row.private_pkcs8);
  if (key.kid !== row.kid) throw new SigningKeyError(`stored signing key ${row.kid} does not match its own private key (thumbprint ${key.kid})`);
  return { ...key, source: "database" };
}

async function loadStoredKeys(db: Kysely<any>): Promise<KeyEntry[]> {
  const { rows } = await sql<Pick<SigningKeyRow, "kid" | "public_jwk">>`select kid, public_jwk from identitet.signing_keys
    where retired_at is null order by created_at desc, kid desc`.execute(db);
  return Promise.all(rows.map((row) => publicEntry(row.public_jwk)));
}
