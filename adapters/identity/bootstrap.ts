import { randomBytes, randomUUID, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { sql, type Kysely } from "kysely";
import { ConcurrencyError } from "../eventstore/errors.ts";
import type { LogPosition } from "../eventstore/port.ts";
import { executeIdentityCommand, identityHandler } from "../../commands/identitet/grants.ts";
import { loadStream, type CommandStore } from "../../commands/pipeline.ts";
import { identityStreamId } from "../../domain/identitet/stream.ts";

/**
 * The bootstrap credential: how the first operator gets in before any
 * identity provider is configured.
 *
 * On first start a secret is chosen (DV_BOOTSTRAP_SECRET, or 32 random bytes
 * base64url that the caller prints once) and only its scrypt hash is stored in
 * `identitet.bootstrap`. Subject `bootstrap-admin` is granted platform-admin by
 * a GrantRole command (an event, like every grant) the first time only: an
 * operator who later revokes that grant has disabled the credential for good,
 * and restarts do not bring it back. POST /v1/auth/token with
 * `{ grant_type: "bootstrap", secret }` exchanges the secret for a token.
 */

export const BOOTSTRAP_SUBJECT = "bootstrap-admin";
/** The actor of the first grant in the event log. */
export const BOOTSTRAP_ACTOR = { kind: "system", id: "identitet-bootstrap" } as const;
/** A DV_BOOTSTRAP_SECRET shorter than this is refused: it guards platform-admin. */
export const MIN_SECRET_LENGTH = 16;
/** Longer inputs are refused before hashing (bounds the work a caller can ask for). */
export const MAX_SECRET_LENGTH = 512;

const BOOTSTRAP_LOCK = 0x1de7_0002;

// scrypt: N = 2^15, r = 8, p = 1 (32 MiB, ~50 ms) -- OWASP's recommended minimum is 2^17 with r 8 for
// passwords; a bootstrap secret is 256 random bits (or an operator's >= 16 characters) and the hash only
// has to make an offline guess of a weak one expensive, so this leaves logins fast.
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, keylen: 32 } as const;
const SCRYPT_MAXMEM = 64 * 1024 * 1024;

export type BootstrapState =
  /** No secret was stored: a random one was generated (`secret` holds it, print it once). */
  | "generated"
  /** No secret was stored: DV_BOOTSTRAP_SECRET was stored. */
  | "from_env"
  /** A secret was stored and DV_BOOTSTRAP_SECRET differs: the stored one was replaced (recovery of a lost secret). */
  | "rotated_from_env"
  /** A secret was stored and is kept. */
  | "existing";

export interface BootstrapResult {
  /** The secret, only when newly generated (print it once; it is not stored anywhere). */
  readonly secret: string | null;
  readonly subject: string;
  readonly state: BootstrapState;
  /** True when this call appended the RoleGranted event. */
  readonly granted: boolean;
  /** Log position of the grant this call appended, for read-your-writes; null when it appended nothing. */
  readonly position: LogPosition | null;
}

export interface EnsureBootstrapOptions {
  readonly db: Kysely<any>;
  readonly store: CommandStore;
  /** DV_BOOTSTRAP_SECRET; undefined or blank when unset. */
  readonly envSecret?: string | null;
}

export class BootstrapSecretError extends Error {
  override readonly name = "BootstrapSecretError";
}

/** Idempotent; safe when several instances start at once (advisory lock + pinned stream version). */
export async function ensureBootstrap(options: EnsureBootstrapOptions): Promise<BootstrapResult> {
  const envSecret = options.envSecret?.trim() ? options.envSecret : null;
  if (envSecret !== null && (envSecret.length < MIN_SECRET_LENGTH || envSecret.length > MAX_SECRET_LENGTH)) {
    throw new BootstrapSecretError(`DV_BOOTSTRAP_SECRET must be ${MIN_SECRET_LENGTH}-${MAX_SECRET_LENGTH} characters`);
  }

  const { secret, state } = await options.db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`.execute(trx);
    const { rows } = await sql<{ secret_hash: string }>`select secret_hash from identitet.bootstrap
      where subject = ${BOOTSTRAP_SUBJECT}`.execute(trx);
    const stored = rows[0];
    if (!stored) {
      const chosen = envSecret ?? generateBootstrapSecret();
      await sql`insert into identitet.bootstrap (subject, secret_hash)
        values (${BOOTSTRAP_SUBJECT}, ${await hashSecret(chosen)})`.execute(trx);
      return envSecret ? { secret: null, state: "from_env" as const } : { secret: chosen, state: "generated" as const };
    }
    if (envSecret !== null && !(await verifySecret(envSecret, stored.secret_hash))) {
      await sql`update identitet.bootstrap set secret_hash = ${await hashSecret(envSecret)}, updated_at = now()
        where subject = ${BOOTSTRAP_SUBJECT}`.execute(trx);
      return { secret: null, state: "rotated_from_env" as const };
    }
    return { secret: null, state: "existing" as const };
  });

  const { granted, position } = await grantOnce(options.store);
  return { secret, subject: BOOTSTRAP_SUBJECT, state, granted, position };
}

/** Grants platform-admin to bootstrap-admin if its stream is empty (never granted, never revoked). */
async function grantOnce(store: CommandStore): Promise<{ granted: boolean; position: LogPosition | null }> {
  const loaded = await loadStream(store, identityStreamId(BOOTSTRAP_SUBJECT), identityHandler.eventSchemas);
  if (loaded.version !== "no_stream") return { granted: false, position: null };
  try {
    const result = await executeIdentityCommand(
      store,
      { type: "GrantRole", subject: BOOTSTRAP_SUBJECT, subjectKind: "user", role: { role: "platform-admin" } },
      { actor: BOOTSTRAP_ACTOR, correlationId: randomUUID(), expectedVersion: "no_stream" },
    );
    return { granted: result.events.length > 0, position: result.position };
  } catch (error) {
    // Another instance starting at the same moment granted it first.
    if (error instanceof ConcurrencyError) return { granted: false, position: null };
    throw error;
  }
}

/** Does `secret` match the stored bootstrap secret? Constant time in the secret; false when none is stored. */
export async function verifyBootstrapSecret(db: Kysely<any>, secret: string): Promise<boolean> {
  if (typeof secret !== "string" || secret.length === 0 || secret.length > MAX_SECRET_LENGTH) return false;
  const { rows } = await sql<{ secret_hash: string }>`select secret_hash from identitet.bootstrap
    where subject = ${BOOTSTRAP_SUBJECT}`.execute(db);
  const stored = rows[0];
  if (!stored) {
    // Same work as a real check, so the answer time does not tell whether a secret exists.
    await verifySecret(secret, DUMMY_HASH);
    return false;
  }
  return verifySecret(secret, stored.secret_hash);
}

/** 32 random bytes, base64url (43 characters). */
export function generateBootstrapSecret(): string {
  return randomBytes(32).toString("base64url");
}

// ---------------------------------------------------------------------------
// Hash format: `scrypt$<N>$<r>$<p>$<salt base64url>$<hash base64url>`, parameters stored with the hash so
// they can be raised later without invalidating stored secrets.

function scryptAsync(secret: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(secret.normalize("NFC"), salt, keylen, options, (error, key) => (error ? reject(error) : resolve(key))));
}

export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(secret, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, maxmem: SCRYPT_MAXMEM });
  return ["scrypt", SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString("base64url"), hash.toString("base64url")].join("$");
}

export async function verifySecret(secret: string, encoded: string): Promise<boolean> {
  const parts = encoded.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") throw new BootstrapSecretError("stored bootstrap hash is not in scrypt format");
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, "base64url");
  const expected = Buffer.from(parts[5]!, "base64url");
  const actual = await scryptAsync(secret, salt, expected.length, { N, r, p, maxmem: SCRYPT_MAXMEM });
  return timingSafeEqual(actual, expected);
}

/** A well-formed hash of nothing anyone knows, for equal-time answers when no secret is stored. */
const DUMMY_HASH = ["scrypt", SCRYPT.N, SCRYPT.r, SCRYPT.p, randomBytes(16).toString("base64url"), randomBytes(32).toString("base64url")].join("$");
