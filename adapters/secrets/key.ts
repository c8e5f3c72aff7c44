import { readFileSync } from "node:fs";
import { deriveKey, KEY_BYTES, type SecretKey } from "./crypto.ts";

export class SecretKeyConfigError extends Error {
  override readonly name = "SecretKeyConfigError";
}

/**
 * The master key from configuration: `DV_SECRET_KEY` (base64 of 32 bytes) or
 * `DV_SECRET_KEY_FILE` (a file holding that base64 text, or the 32 raw
 * bytes). Null when neither is set: the platform then refuses to store
 * passwords rather than store them unprotected. Generate one with
 * `openssl rand -base64 32`.
 */
export function loadSecretKey(env: NodeJS.ProcessEnv = process.env): SecretKey | null {
  const inline = env.DV_SECRET_KEY?.trim();
  const file = env.DV_SECRET_KEY_FILE?.trim();
  if (inline && file) throw new SecretKeyConfigError("set DV_SECRET_KEY or DV_SECRET_KEY_FILE, not both");
  if (inline) return deriveKey(decode(inline, "DV_SECRET_KEY"));
  if (file) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (error) {
      throw new SecretKeyConfigError(`DV_SECRET_KEY_FILE ${file} cannot be read: ${(error as Error).message}`);
    }
    return deriveKey(bytes.length === KEY_BYTES ? bytes : decode(bytes.toString("utf8").trim(), `DV_SECRET_KEY_FILE ${file}`));
  }
  return null;
}

function decode(text: string, source: string): Buffer {
  const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, "base64") : Buffer.alloc(0);
  if (bytes.length !== KEY_BYTES) throw new SecretKeyConfigError(`${source} must be the base64 of ${KEY_BYTES} random bytes (openssl rand -base64 32)`);
  return bytes;
}
