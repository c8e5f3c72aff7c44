/**
 * The secret store's ports. Passwords (BMC credentials, later switch and
 * cloud credentials) never enter events, logs or read models: they are put
 * here and referred to as `secret:<uuid>`.
 *
 * - The import (commands/inventory) only *writes*: SecretWriter.
 * - Only workers that must talk to the device read: SecretReader.reveal.
 *   Nothing in api/ holds a SecretReader.
 */
export type SecretRef = `secret:${string}`;

export interface SecretWriter {
  /**
   * Stores `plaintext` as the secret of `subject` (e.g. `bmc:osl1/node-01`)
   * and returns its reference. The same plaintext for the same subject again
   * returns the existing reference and stores nothing (matched by a keyed
   * HMAC fingerprint, never a plain hash).
   */
  put(plaintext: string, subject: string): Promise<SecretRef>;
  /** The reference put() would return for an already stored plaintext, or null; stores nothing. */
  find(plaintext: string, subject: string): Promise<SecretRef | null>;
}

export interface SecretReader {
  /** The plaintext of a stored secret. Throws SecretNotFoundError, SecretKeyMismatchError or SecretDecryptionError. */
  reveal(ref: string): Promise<string>;
}

const REF_PATTERN = /^secret:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

export function secretRef(id: string): SecretRef {
  return `secret:${id}`;
}

/** The uuid inside a reference, or undefined when it is not one. */
export function secretIdOf(ref: string): string | undefined {
  return REF_PATTERN.exec(ref)?.[1];
}
