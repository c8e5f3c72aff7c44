import { sql, type Kysely } from "kysely";

/**
 * Schema `secrets` (issue 5): sealed secrets (BMC passwords first). Never a
 * plaintext: AES-256-GCM ciphertext, its 96-bit IV and 128-bit tag, and the
 * id of the master key that sealed it. `fingerprint` is an HMAC (keyed with
 * a key derived from the master key) of the subject and the plaintext, so
 * storing the same password for the same thing again finds the row instead
 * of adding one; without the key it says nothing about the password.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists secrets`.execute(db);
  await sql`
    create table secrets.secrets (
      id uuid primary key,
      key_id text not null,
      iv bytea not null check (octet_length(iv) = 12),
      ciphertext bytea not null,
      auth_tag bytea not null check (octet_length(auth_tag) = 16),
      fingerprint bytea not null check (octet_length(fingerprint) = 32),
      subject text not null,
      created_at timestamptz not null default now(),
      unique (key_id, fingerprint)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema if exists secrets cascade`.execute(db);
}
