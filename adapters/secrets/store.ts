import { v4 as uuidv4 } from "uuid";
import type pg from "pg";
import { fingerprint, open, seal, type SecretKey } from "./crypto.ts";
import { secretIdOf, secretRef, type SecretReader, type SecretRef, type SecretWriter } from "./port.ts";

export class SecretNotFoundError extends Error {
  override readonly name = "SecretNotFoundError";
}

/** The secret was sealed with another master key than the one configured. */
export class SecretKeyMismatchError extends Error {
  override readonly name = "SecretKeyMismatchError";
}

/**
 * Secrets in Postgres, table `secrets.secrets` (migration 0008): per row the
 * key id, IV, ciphertext, auth tag and the keyed fingerprint of (subject,
 * plaintext). Plaintext exists only in this process's memory, while put()
 * seals it and while reveal() hands it to a worker.
 *
 * Give the API a `SecretWriter` view (import), give workers the store
 * (`reveal`). Rotating the master key is future work: rows name their key id,
 * so a re-encryption job can find what an old key sealed.
 */
export class PostgresSecretStore implements SecretWriter, SecretReader {
  constructor(
    private readonly pool: pg.Pool,
    private readonly key: SecretKey,
  ) {}

  get keyId(): string {
    return this.key.id;
  }

  async find(plaintext: string, subject: string): Promise<SecretRef | null> {
    const { rows } = await this.pool.query<{ id: string }>(
      "select id::text from secrets.secrets where key_id = $1 and fingerprint = $2",
      [this.key.id, fingerprint(this.key, subject, plaintext)],
    );
    return rows[0] ? secretRef(rows[0].id) : null;
  }

  async put(plaintext: string, subject: string): Promise<SecretRef> {
    if (plaintext.length === 0) throw new RangeError("a secret must not be empty");
    const print = fingerprint(this.key, subject, plaintext);
    const id = uuidv4();
    const sealed = seal(this.key, plaintext, aadOf(id, this.key.id));
    // Two imports of the same password race to one row: the loser finds the winner's.
    await this.pool.query(
      `insert into secrets.secrets (id, key_id, iv, ciphertext, auth_tag, fingerprint, subject)
       values ($1, $2, $3, $4, $5, $6, $7) on conflict (key_id, fingerprint) do nothing`,
      [id, this.key.id, sealed.iv, sealed.ciphertext, sealed.tag, print, subject],
    );
    const found = await this.find(plaintext, subject);
    if (!found) throw new Error("a secret just stored cannot be found");
    return found;
  }

  async reveal(ref: string): Promise<string> {
    const id = secretIdOf(ref);
    if (!id) throw new SecretNotFoundError(`${JSON.stringify(ref)} is not a secret reference`);
    const { rows } = await this.pool.query<{ key_id: string; iv: Buffer; ciphertext: Buffer; auth_tag: Buffer }>(
      "select key_id, iv, ciphertext, auth_tag from secrets.secrets where id = $1",
      [id],
    );
    const row = rows[0];
    if (!row) throw new SecretNotFoundError(`secret ${ref} does not exist`);
    if (row.key_id !== this.key.id) {
      throw new SecretKeyMismatchError(`secret ${ref} was sealed with key ${row.key_id}; this process has key ${this.key.id}`);
    }
    return open(this.key, { iv: row.iv, ciphertext: row.ciphertext, tag: row.auth_tag }, aadOf(id, row.key_id));
  }
}

function aadOf(id: string, keyId: string): string {
  return `dataverket-secret:${id}:${keyId}`;
}
