import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import type { NatsNamespace } from "../../adapters/nats/namespace.ts";
import { connectShared, dropNamespace, testNamespace } from "../integration/nats/support/nats.ts";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { answers, childEnv, freePort, runBin, Running } from "./support.ts";

/**
 * The platform as a user starts it, for the end-to-end tests: `dv up
 * --no-workers` as a child process on its own database, NATS namespace and
 * directory, a CLI logged in with the bootstrap credential, and one tenant
 * with one project set as the CLI's context. Workers are the test's.
 */
export interface Platform {
  readonly api: string;
  readonly apiPort: number;
  readonly dir: string;
  readonly database: TestDatabase;
  readonly namespace: NatsNamespace;
  /** The CLI's environment (its own config and data directory), logged in. */
  readonly env: NodeJS.ProcessEnv;
  /** What `dv up` and the test's workers run with: database, namespace, secret key and the test's own settings. */
  readonly serverEnv: NodeJS.ProcessEnv;
  readonly up: Running;
  readonly tenantId: string;
  readonly projectId: string;
  /** Runs a bin with `--output json`; its exit code must be 0. */
  json<T = Record<string, unknown>>(bin: string, args: string[]): Promise<T>;
  /** Stops `dv up`, drops the database, the directory and the namespace (the test stops its workers first). */
  dispose(): Promise<void>;
}

export interface PlatformOptions {
  /** Names the NATS namespace and the temporary directory. */
  readonly label: string;
  readonly tenant: string;
  readonly project: string;
  /** Settings of `dv up` and the workers that depend on the API's port (the boot service's URL). */
  readonly serverEnv?: (apiPort: number) => Record<string, string>;
  /** Runs once the API's port is known, before `dv up` starts (lab servers that netboot from it). */
  readonly beforeUp?: (apiPort: number) => Promise<void>;
}

export async function startPlatform(options: PlatformOptions): Promise<Platform> {
  const database = await createTestDatabase();
  const namespace = testNamespace(options.label);
  const dir = await mkdtemp(join(tmpdir(), `dv-${options.label}-`));
  const apiPort = await freePort();
  const api = `http://127.0.0.1:${apiPort}`;
  await options.beforeUp?.(apiPort);
  const env = childEnv({ DV_CONFIG: join(dir, "config", "config.json"), DV_DATA_DIR: join(dir, "data") });
  const serverEnv: NodeJS.ProcessEnv = {
    ...env,
    DATABASE_URL: database.url,
    DV_NATS_NAMESPACE: namespace.prefix,
    DV_SECRET_KEY: randomBytes(32).toString("base64"),
    ...options.serverEnv?.(apiPort),
  };
  const secret = `e2e-${randomBytes(16).toString("hex")}`;
  const up = new Running("dv", ["up", "--no-workers"], { ...serverEnv, DV_PORT: String(apiPort), DV_BOOTSTRAP_SECRET: secret });
  await up.waitFor(`${api}/healthz`, () => answers(`${api}/healthz`), 60_000);

  const json = async <T>(bin: string, args: string[]): Promise<T> => {
    const result = await runBin(bin, [...args, "--output", "json"], env);
    expect(result.code, `${bin} ${args.join(" ")}\n${result.stderr}`).toBe(0);
    return JSON.parse(result.stdout) as T;
  };
  const login = await runBin("dvid", ["login", "--api", api, "--bootstrap-secret", secret], env);
  expect(login.code, login.stderr).toBe(0);
  const tenant = await json<{ id?: string; tenantId?: string }>("dv", ["tenant", "create", options.tenant]);
  const tenantId = (tenant.id ?? tenant.tenantId)!;
  const project = await json<{ id?: string; projectId?: string }>("dv", ["project", "create", options.project, "--tenant", tenantId]);
  const projectId = (project.id ?? project.projectId)!;
  const set = await runBin("dv", ["context", "set", "--tenant", tenantId, "--project", projectId], env);
  expect(set.code, set.stderr).toBe(0);

  return {
    api,
    apiPort,
    dir,
    database,
    namespace,
    env,
    serverEnv,
    up,
    tenantId,
    projectId,
    json,
    async dispose() {
      await up.ensureDead();
      await database.drop();
      await rm(dir, { recursive: true, force: true });
      const nc = await connectShared(`${options.label}-cleanup`);
      await dropNamespace(nc, namespace).finally(() => nc.close());
    },
  };
}
