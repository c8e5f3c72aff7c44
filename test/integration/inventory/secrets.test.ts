import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { createPool } from "../../../adapters/postgres/connection.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  bmcEndpointOf,
  deriveKey,
  loadSecretKey,
  open,
  PostgresSecretStore,
  seal,
  SecretDecryptionError,
  SecretKeyConfigError,
  SecretKeyMismatchError,
} from "../../../adapters/secrets/index.ts";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.ts";

let database: TestDatabase;
let pool: pg.Pool;
beforeAll(async () => {
  database = await createTestDatabase();
  pool = createPool(database.url, { max: 4 });
});
afterAll(async () => {
  await pool.end();
  await database.drop();
});

const key = deriveKey(randomBytes(32));

describe("sealing (AES-256-GCM)", () => {
  it("round trips; a fresh IV each time; the wrong key, another row's AAD or a flipped bit fail", () => {
    const a = seal(key, "hunter2", "row-1");
    const b = seal(key, "hunter2", "row-1");
    expect(a.iv).toHaveLength(12);
    expect(a.tag).toHaveLength(16);
    expect(a.iv.equals(b.iv)).toBe(false);
    expect(a.ciphertext.includes(Buffer.from("hunter2"))).toBe(false);
    expect(open(key, a, "row-1")).toBe("hunter2");
    expect(() => open(deriveKey(randomBytes(32)), a, "row-1")).toThrow(SecretDecryptionError);
    expect(() => open(key, a, "row-2")).toThrow(SecretDecryptionError);
    const tampered = Buffer.from(a.ciphertext);
    tampered[0] = tampered[0]! ^ 1;
    expect(() => open(key, { ...a, ciphertext: tampered }, "row-1")).toThrow(SecretDecryptionError);
    const badTag = Buffer.from(a.tag);
    badTag[15] = badTag[15]! ^ 0x80;
    expect(() => open(key, { ...a, tag: badTag }, "row-1")).toThrow(SecretDecryptionError);
  });
});

describe("the key from configuration", () => {
  it("DV_SECRET_KEY (base64 of 32 bytes) or DV_SECRET_KEY_FILE (base64 text or raw bytes); anything else is refused", async () => {
    const raw = randomBytes(32);
    const dir = await mkdtemp(join(tmpdir(), "dv-secret-"));
    try {
      expect(loadSecretKey({})).toBeNull();
      const inline = loadSecretKey({ DV_SECRET_KEY: raw.toString("base64") })!;
      await writeFile(join(dir, "b64"), `${raw.toString("base64")}\n`);
      await writeFile(join(dir, "raw"), raw);
      expect(loadSecretKey({ DV_SECRET_KEY_FILE: join(dir, "b64") })!.id).toBe(inline.id);
      expect(loadSecretKey({ DV_SECRET_KEY_FILE: join(dir, "raw") })!.id).toBe(inline.id);
      expect(() => loadSecretKey({ DV_SECRET_KEY: randomBytes(16).toString("base64") })).toThrow(SecretKeyConfigError);
      expect(() => loadSecretKey({ DV_SECRET_KEY: "not base64!" })).toThrow(SecretKeyConfigError);
      expect(() => loadSecretKey({ DV_SECRET_KEY_FILE: join(dir, "missing") })).toThrow(SecretKeyConfigError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("PostgresSecretStore", () => {
  it("puts, finds the same password for the same subject again without a new row, reveals; nothing stored is plaintext", async () => {
    const store = new PostgresSecretStore(pool, key);
    const ref = await store.put("s3cret-pw", "bmc:osl1/node-01");
    expect(ref).toMatch(/^secret:[0-9a-f-]{36}$/);
    expect(await store.put("s3cret-pw", "bmc:osl1/node-01")).toBe(ref);
    expect(await store.find("s3cret-pw", "bmc:osl1/node-01")).toBe(ref);
    expect(await store.find("other", "bmc:osl1/node-01")).toBeNull();
    expect(await store.put("s3cret-pw", "bmc:osl1/node-02")).not.toBe(ref);
    expect(await store.reveal(ref)).toBe("s3cret-pw");
    const { rows } = await pool.query("select * from secrets.secrets");
    expect(JSON.stringify(rows)).not.toContain("s3cret-pw");
    expect(rows.some((r) => Buffer.concat([r.ciphertext, r.fingerprint, r.iv]).includes(Buffer.from("s3cret-pw")))).toBe(false);
  });

  it("another key cannot read it, and a tampered row fails to open", async () => {
    const store = new PostgresSecretStore(pool, key);
    const ref = await store.put("pw-2", "bmc:osl1/node-03");
    await expect(new PostgresSecretStore(pool, deriveKey(randomBytes(32))).reveal(ref)).rejects.toThrow(SecretKeyMismatchError);
    await pool.query("update secrets.secrets set ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) where id = $1", [ref.slice(7)]);
    await expect(store.reveal(ref)).rejects.toThrow(SecretDecryptionError);
  });

  it("a worker gets a host's BMC endpoint with the password", async () => {
    const store = new PostgresSecretStore(pool, key);
    const credentialRef = await store.put("ipmi-pw", "bmc:osl1/node-09");
    const endpoint = await bmcEndpointOf({ name: "node-09", bmcAddress: "127.0.0.1", bmc: { driver: "ipmi", port: 9623, username: "admin", credentialRef } }, store);
    expect(endpoint).toEqual({ driver: "ipmi", address: "127.0.0.1", port: 9623, username: "admin", password: "ipmi-pw" });
    const suite17 = await bmcEndpointOf({ name: "node-09", bmcAddress: "127.0.0.1", bmc: { driver: "ipmi", port: 9623, username: "admin", credentialRef, cipherSuite: 17 } }, store);
    expect(suite17).toMatchObject({ cipherSuite: 17, password: "ipmi-pw" });
    await expect(bmcEndpointOf({ name: "x", bmcAddress: null, bmc: null }, store)).rejects.toThrow(/no BMC/);
  });
});
