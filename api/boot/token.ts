import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * One-time install tokens. The plain token only ever exists in the iPXE
 * script served to the machine (its kernel command line) and in the
 * installer's requests; the platform records and compares its SHA-256 digest
 * (lowercase hex), so neither the event log nor a read model can replay it.
 */
export const INSTALL_TOKEN_BYTES = 32;

/** 32 random bytes, base64url (43 characters, no padding): safe in a URL and on a kernel command line. */
export function issueInstallToken(): { token: string; digest: string } {
  const token = randomBytes(INSTALL_TOKEN_BYTES).toString("base64url");
  return { token, digest: tokenDigest(token) };
}

export function tokenDigest(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Constant-time comparison of two hex digests. */
export function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The token from a query value. A naive installer that appends `?mac=...` to
 * a callback URL that already has `?token=...` makes the value
 * `<token>?mac=...`: base64url has no `?`, so everything from it on is cut.
 * Anything that is not a base64url token of the right length is null.
 */
export function tokenFromQuery(value: unknown): string | null {
  const raw = Array.isArray(value) ? value[0] : value;
  if (typeof raw !== "string") return null;
  const token = raw.split("?")[0]!;
  return /^[A-Za-z0-9_-]{43}$/.test(token) ? token : null;
}
