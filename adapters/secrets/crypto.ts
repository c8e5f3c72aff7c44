import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";

/**
 * AES-256-GCM sealing of one secret. A 96-bit random IV per secret, the
 * 128-bit auth tag kept beside the ciphertext, and additional authenticated
 * data binding the ciphertext to its row (secret id and key id): a
 * ciphertext copied onto another row, a flipped bit, or the wrong key all
 * fail to open. The master key is never used directly: an encryption key and
 * a fingerprint (HMAC) key are derived from it with HKDF-SHA256.
 */
export const KEY_BYTES = 32;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;

export interface SecretKey {
  /** Names the master key (first 16 hex of an HMAC of it); stored with every secret it sealed. */
  readonly id: string;
  readonly encryption: Buffer;
  readonly fingerprint: Buffer;
}

export interface Sealed {
  readonly iv: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

export class SecretDecryptionError extends Error {
  override readonly name = "SecretDecryptionError";
}

export function deriveKey(master: Buffer): SecretKey {
  if (master.length !== KEY_BYTES) throw new RangeError(`a secret key is ${KEY_BYTES} bytes, got ${master.length}`);
  const derive = (info: string) => Buffer.from(hkdfSync("sha256", master, Buffer.alloc(0), info, KEY_BYTES));
  return {
    id: createHmac("sha256", master).update("dataverket secret key id").digest("hex").slice(0, 16),
    encryption: derive("dataverket secrets aes-256-gcm"),
    fingerprint: derive("dataverket secrets fingerprint"),
  };
}

export function seal(key: SecretKey, plaintext: string, aad: string): Sealed {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key.encryption, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, "utf8"));
  const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return { iv, ciphertext, tag: cipher.getAuthTag() };
}

export function open(key: SecretKey, sealed: Sealed, aad: string): string {
  try {
    const decipher = createDecipheriv("aes-256-gcm", key.encryption, sealed.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(aad, "utf8"));
    decipher.setAuthTag(sealed.tag);
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]).toString("utf8");
  } catch {
    // Never say more: which part failed would help an attacker, not the operator.
    throw new SecretDecryptionError("the secret cannot be decrypted: wrong key or tampered ciphertext");
  }
}

/** Keyed fingerprint of (subject, plaintext): finds a stored secret again without storing anything guessable offline. */
export function fingerprint(key: SecretKey, subject: string, plaintext: string): Buffer {
  return createHmac("sha256", key.fingerprint).update(subject).update("\0").update(plaintext).digest();
}
