import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { loadSecretKey, SecretKeyConfigError } from "../../adapters/secrets/key.ts";
import { CliError, ExitCode } from "../core/errors.ts";

export interface ResolvedSecretKey {
  /** The environment the key was given in (for workers started in this process). */
  readonly env: NodeJS.ProcessEnv;
  /** Said once at start: where the key comes from. */
  readonly source: string;
}

/**
 * The master key for stored secrets (BMC passwords): DV_SECRET_KEY or
 * DV_SECRET_KEY_FILE when set; otherwise a key generated once into
 * `<dataDir>/secret.key` (mode 0600) and reused, so a single-machine install
 * works out of the box. Production sets the key (or its file) from its own
 * secret management; losing it makes the stored passwords unreadable.
 */
export async function resolveSecretKey(env: NodeJS.ProcessEnv, dataDir: string): Promise<ResolvedSecretKey> {
  try {
    if (loadSecretKey(env)) return { env, source: env.DV_SECRET_KEY?.trim() ? "DV_SECRET_KEY" : `DV_SECRET_KEY_FILE ${env.DV_SECRET_KEY_FILE}` };
  } catch (error) {
    if (error instanceof SecretKeyConfigError) throw new CliError(ExitCode.usage, error.message);
    throw error;
  }
  const file = join(dataDir, "secret.key");
  const existing = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? null : Promise.reject(error)));
  let source = `${file}`;
  if (existing === null) {
    await mkdir(dirname(file), { recursive: true });
    // wx: never overwrite a key another process wrote meanwhile (that would orphan its secrets).
    await writeFile(file, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600, flag: "wx" }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
    source = `${file} (generated now; back it up: stored BMC passwords are unreadable without it)`;
  }
  const withFile = { ...env, DV_SECRET_KEY_FILE: file };
  try {
    loadSecretKey(withFile);
  } catch (error) {
    if (error instanceof SecretKeyConfigError) throw new CliError(ExitCode.usage, error.message, undefined, `remove or fix ${file}, or set DV_SECRET_KEY`);
    throw error;
  }
  return { env: withFile, source };
}
