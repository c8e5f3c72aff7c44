import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { CliError, ExitCode, usageError } from "./errors.ts";

/**
 * Contexts, like kubectl's: where the API is, the token to send, and the
 * tenant/project/environment commands use when their flags are omitted. One
 * JSON file holds them all, written 0600 (it holds tokens) and replaced
 * atomically, so a crash or two concurrent writers never leave half a file.
 */
export interface Context {
  name: string;
  apiUrl: string;
  token?: string;
  tenant?: string;
  project?: string;
  environment?: string;
  /** Anything a newer CLI wrote; kept as it is. */
  [extra: string]: unknown;
}

export interface ConfigFile {
  version: 1;
  currentContext?: string;
  contexts: Context[];
  [extra: string]: unknown;
}

export const CONFIG_VERSION = 1;

/** DV_CONFIG, else $XDG_CONFIG_HOME/dv/config.json, else ~/.config/dv/config.json. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DV_CONFIG?.trim()) return env.DV_CONFIG;
  const base = env.XDG_CONFIG_HOME?.trim() || join(homedir(), ".config");
  return join(base, "dv", "config.json");
}

export function emptyConfig(): ConfigFile {
  return { version: CONFIG_VERSION, contexts: [] };
}

/** The config at `path`; an empty one when the file does not exist yet. */
export async function loadConfig(path: string, warn?: (message: string) => void): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return emptyConfig();
    throw new CliError(ExitCode.usage, `cannot read config file ${path}: ${(error as Error).message}`);
  }
  if (warn && process.platform !== "win32") {
    const mode = (await stat(path)).mode & 0o777;
    if (mode & 0o077) {
      warn(`config file ${path} is readable by others (mode ${mode.toString(8)}); it holds tokens: chmod 600 it (dv does on its next write)`);
    }
  }
  return parseConfig(text, path);
}

export function parseConfig(text: string, path = "config"): ConfigFile {
  let raw: unknown;
  try {
    raw = text.trim() === "" ? {} : JSON.parse(text);
  } catch (error) {
    throw usageError(`config file ${path} is not valid JSON: ${(error as Error).message}`, "fix or remove it");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw usageError(`config file ${path} must hold a JSON object`);
  }
  const record = raw as Record<string, unknown>;
  const contexts = record.contexts ?? [];
  if (!Array.isArray(contexts)) throw usageError(`config file ${path}: "contexts" must be a list`);
  const parsed: Context[] = contexts.map((context, index) => {
    if (typeof context !== "object" || context === null) throw usageError(`config file ${path}: contexts[${index}] must be an object`);
    const c = context as Record<string, unknown>;
    if (typeof c.name !== "string" || !c.name) throw usageError(`config file ${path}: contexts[${index}].name must be a non-empty string`);
    if (typeof c.apiUrl !== "string" || !c.apiUrl) throw usageError(`config file ${path}: context ${c.name} has no apiUrl`);
    for (const key of ["token", "tenant", "project", "environment"] as const) {
      if (c[key] !== undefined && typeof c[key] !== "string") throw usageError(`config file ${path}: context ${c.name}: ${key} must be a string`);
    }
    return c as Context;
  });
  const current = record.currentContext;
  if (current !== undefined && typeof current !== "string") throw usageError(`config file ${path}: currentContext must be a string`);
  return { ...record, version: CONFIG_VERSION, contexts: parsed, ...(current ? { currentContext: current } : {}) } as ConfigFile;
}

/**
 * Writes the config: directory created 0700 when missing, the file written
 * 0600 to a temporary name beside it, flushed, then renamed over the old one.
 */
export async function saveConfig(path: string, config: ConfigFile): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temporary = join(dir, `.${randomBytes(6).toString("hex")}.config.tmp`);
  const handle = await open(temporary, "wx", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(config, null, 2)}\n`, "utf8");
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  // The umask cannot loosen 0600, but a file created by an older version may have; rename keeps the new file's mode.
  await chmod(temporary, 0o600);
  await rename(temporary, path);
}

export function findContext(config: ConfigFile, name: string): Context | undefined {
  return config.contexts.find((c) => c.name === name);
}

/** Adds or replaces the context with the same name. */
export function upsertContext(config: ConfigFile, context: Context): ConfigFile {
  const others = config.contexts.filter((c) => c.name !== context.name);
  const index = config.contexts.findIndex((c) => c.name === context.name);
  const contexts = [...others];
  contexts.splice(index === -1 ? contexts.length : index, 0, context);
  return { ...config, contexts };
}

/** A context name for an API URL: its host and port (`127.0.0.1-8080`), safe in shells and completion. */
export function contextNameFor(apiUrl: string): string {
  const url = new URL(apiUrl);
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return `${url.hostname.replace(/^\[|\]$/g, "")}-${port}`.replace(/[^A-Za-z0-9._-]/g, "-");
}

/** An API URL as stored: absolute http(s), no trailing slash, no query. */
export function normaliseApiUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value.includes("://") ? value : `http://${value}`);
  } catch {
    throw usageError(`invalid API URL ${JSON.stringify(value)}`, "e.g. --api http://127.0.0.1:8080");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw usageError(`API URL must be http or https: ${value}`);
  if (url.username || url.password) throw usageError("API URL must not contain credentials; use dvid login");
  url.search = "";
  url.hash = "";
  return url.toString().replace(/\/+$/, "");
}
