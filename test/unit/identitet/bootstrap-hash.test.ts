import { describe, expect, it } from "vitest";
import { generateBootstrapSecret, hashSecret, verifySecret } from "../../../adapters/identity/bootstrap.ts";

describe("bootstrap secret hashing", () => {
  it("generates 32 random bytes as base64url", () => {
    const a = generateBootstrapSecret();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a, "base64url")).toHaveLength(32);
    expect(generateBootstrapSecret()).not.toBe(a);
  });

  it("stores scrypt with its parameters and a random salt, never the secret", async () => {
    const secret = "correct horse battery staple";
    const [one, two] = await Promise.all([hashSecret(secret), hashSecret(secret)]);
    expect(one).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(one).not.toBe(two);
    expect(one).not.toContain(secret);
    expect(await verifySecret(secret, one)).toBe(true);
    expect(await verifySecret(secret, two)).toBe(true);
    expect(await verifySecret("correct horse battery stapl", one)).toBe(false);
    expect(await verifySecret("", one)).toBe(false);
  });

  it("refuses a stored hash in another format instead of accepting anything", async () => {
    await expect(verifySecret("x", "plain:x")).rejects.toThrow(/scrypt/);
  });
});
