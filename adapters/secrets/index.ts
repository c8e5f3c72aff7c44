/** The secret store: AES-256-GCM sealed secrets in Postgres; the key from DV_SECRET_KEY / DV_SECRET_KEY_FILE. */
export { deriveKey, fingerprint, open, seal, SecretDecryptionError, type Sealed, type SecretKey } from "./crypto.ts";
export { loadSecretKey, SecretKeyConfigError } from "./key.ts";
export { secretIdOf, secretRef, type SecretReader, type SecretRef, type SecretWriter } from "./port.ts";
export { PostgresSecretStore, SecretKeyMismatchError, SecretNotFoundError } from "./store.ts";
export { bmcEndpointOf, type BmcEndpoint } from "./bmc.ts";
