import { sql, type Kysely } from "kysely";

/**
 * Identitet's own state (schema `identitet`): what is not derived from the
 * event log and so is no read model. (Role grants are events; their read
 * model is the `grants` projection.)
 *
 * - signing_keys: the built-in token issuer's Ed25519 keys. Generated on
 *   first start when no DV_SIGNING_KEY_FILE is given. Keys whose retired_at is
 *   null are published in the JWKS and verify tokens; the newest of them signs.
 *   public_jwk is the public JWK (kty, crv, x); private_pkcs8 the private key
 *   as a PKCS#8 PEM, stored in the clear: production should supply the key
 *   from a file or KMS instead (see adapters/identity/README.md).
 * - bootstrap: the scrypt hash of the bootstrap secret (never the secret),
 *   one row per bootstrap subject.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists identitet`.execute(db);
  await sql`
    create table identitet.signing_keys (
      kid text primary key,
      public_jwk jsonb not null,
      private_pkcs8 text not null,
      created_at timestamptz not null default now(),
      retired_at timestamptz
    )`.execute(db);
  await sql`
    create table identitet.bootstrap (
      subject text primary key,
      secret_hash text not null,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema identitet cascade`.execute(db);
}
