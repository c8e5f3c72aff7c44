import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/postgres.ts";
import { connectShared, dropNamespace, testNamespace } from "../integration/nats/support/nats.ts";
import { answers, childEnv, freePort, runBin, Running } from "./support.ts";

/**
 * The CLI end to end: `dv up` as a real child process (the composition root:
 * database, migrations, projections, identity, HTTP server), driven by the
 * dv and dvid bins as a user would, then stopped with SIGINT.
 */
describe("dv up on an external database, driven by the CLI", () => {
  let database: TestDatabase;
  let dir: string;
  let server: Running;
  let env: NodeJS.ProcessEnv;
  let api: string;
  const secret = `e2e-${randomBytes(16).toString("hex")}`;
  // dv up relays to the shared NATS: in streams of its own, removed afterwards.
  const namespace = testNamespace("e2e");

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = await mkdtemp(join(tmpdir(), "dv-e2e-"));
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    env = childEnv({ DV_CONFIG: join(dir, "config", "config.json"), DV_DATA_DIR: join(dir, "data") });
    server = new Running("dv", ["up"], {
      ...env,
      DATABASE_URL: database.url,
      DV_PORT: String(port),
      DV_BOOTSTRAP_SECRET: secret,
      DV_NATS_NAMESPACE: namespace.prefix,
    });
    await server.waitFor(`${api}/healthz`, () => answers(`${api}/healthz`), 60_000);
  }, 90_000);

  afterAll(async () => {
    await server?.ensureDead();
    await database?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
    const nc = await connectShared("e2e-cleanup");
    await dropNamespace(nc, namespace).finally(() => nc.close());
  });

  it("prints where it listens and which database it uses, never the database password", () => {
    expect(server.stdout).toContain(api);
    expect(server.stdout).toMatch(/database:\s+external/);
    // The secret came from DV_BOOTSTRAP_SECRET, so it is not "newly generated" and must not be printed.
    expect(server.stdout + server.stderr).not.toContain(secret);
  });

  it("dvid login with the bootstrap secret saves a 0600 context; whoami and token work", async () => {
    const bad = await runBin("dvid", ["login", "--api", api, "--bootstrap-secret", "wrong-secret"], env);
    expect(bad.code, bad.stderr).toBe(4);

    const login = await runBin("dvid", ["login", "--api", api, "--bootstrap-secret", secret], env);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain(`Logged in to ${api}`);
    const configFile = join(dir, "config", "config.json");
    expect((await stat(configFile)).mode & 0o777).toBe(0o600);
    const config = JSON.parse(await readFile(configFile, "utf8"));
    expect(config.contexts[0].apiUrl).toBe(api);

    const whoami = await runBin("dvid", ["whoami", "-o", "json"], env);
    expect(whoami.code, whoami.stderr).toBe(0);
    expect(JSON.parse(whoami.stdout)).toBeTypeOf("object");

    const token = await runBin("dvid", ["token"], env);
    expect(token.code).toBe(0);
    expect(token.stdout.trim()).toBe(config.contexts[0].token);
  });

  it("creates tenant -> project -> environment, lists them, and reads them back as JSON", async () => {
    const json = async (args: string[]) => {
      const result = await runBin("dv", [...args, "--output", "json"], env);
      expect(result.code, `dv ${args.join(" ")}\n${result.stderr}`).toBe(0);
      return JSON.parse(result.stdout);
    };
    const tenant = await json(["tenant", "create", "acme", "--display-name", "Acme AS"]);
    expect(tenant).toMatchObject({ name: "acme" });
    const tenantId = tenant.id ?? tenant.tenantId;
    expect(tenantId).toBeTypeOf("string");

    const project = await json(["project", "create", "web", "--tenant", tenantId, "--description", "the website"]);
    expect(project).toMatchObject({ name: "web" });
    const projectId = project.id ?? project.projectId;

    // The rest through the context's defaults, as a user would after `dv context set`.
    const set = await runBin("dv", ["context", "set", "--tenant", tenantId, "--project", projectId], env);
    expect(set.code, set.stderr).toBe(0);
    const environment = await json(["env", "create", "prod"]);
    expect(environment).toMatchObject({ name: "prod" });

    const tenants = await json(["tenant", "list"]);
    expect(tenants.map((t: { name: string }) => t.name)).toContain("acme");
    expect((await json(["project", "list"])).map((p: { name: string }) => p.name)).toEqual(["web"]);
    expect((await json(["env", "list"])).map((e: { name: string }) => e.name)).toEqual(["prod"]);
    expect(await json(["tenant", "get", "acme"])).toMatchObject({ name: "acme" });
    expect(await json(["project", "get", "web"])).toMatchObject({ name: "web" });

    const table = await runBin("dv", ["project", "list"], env);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+NAME\s+STATUS/);
    expect(table.stdout).toMatch(/\bweb\b/);

    const quota = await runBin("dv", ["quota", "set", "--vcpus", "64", "--memory-mib", "131072", "-o", "json"], env);
    expect(quota.code, quota.stderr).toBe(0);
    const got = await runBin("dv", ["quota", "get"], env);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toMatch(/vcpus\s+64/);
  });

  it("a missing resource exits 2; bad input exits 1 and names the failing field; a duplicate exits 3", async () => {
    const missing = await runBin("dv", ["tenant", "get", "no-such-tenant"], env);
    expect(missing.code, missing.stderr).toBe(2);
    expect(missing.stderr).toContain("not found");

    const bad = await runBin("dv", ["tenant", "create", "Not A DNS Label!"], env);
    expect(bad.code, bad.stderr).toBe(1);
    expect(bad.stderr).toMatch(/name/);
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace

    const duplicate = await runBin("dv", ["project", "create", "web"], env);
    expect(duplicate.code, duplicate.stderr).toBe(3);
  });

  it("the same data reads back through GraphQL, and dv events tail follows new events as JSON lines", async () => {
    const token = (await runBin("dvid", ["token"], env)).stdout.trim();
    const response = await fetch(`${api}/graphql`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ query: "{ tenants { edges { node { name projects { edges { node { name environments { edges { node { name } } } } } } } } } }" }),
    });
    const body = (await response.json()) as { data: { tenants: { edges: Array<{ node: { name: string; projects: { edges: Array<{ node: { name: string; environments: { edges: Array<{ node: { name: string } }> } } }> } } }> } } };
    const acme = body.data.tenants.edges.map((e) => e.node).find((t) => t.name === "acme")!;
    expect(acme.projects.edges.map((e) => e.node.name)).toEqual(["web"]);
    expect(acme.projects.edges[0]!.node.environments.edges.map((e) => e.node.name)).toEqual(["prod"]);

    const tail = new Running("dv", ["events", "tail", "--from-start", "--output", "json"], env);
    try {
      // Replayed from the start, so it is subscribed once acme's creation shows.
      await tail.waitFor("the replayed TenantCreated of acme", () => tail.stdout.includes('"TenantCreated"'), 30_000);
      const created = await runBin("dv", ["tenant", "create", "tailed"], env);
      expect(created.code, created.stderr).toBe(0);
      await tail.waitFor("the new tenant's event", () => tail.stdout.includes('"tailed"'), 30_000);
      const lines = tail.stdout.trim().split("\n").map((line) => JSON.parse(line) as { type: string; position: string });
      expect(lines.every((line) => typeof line.type === "string" && /^\d+\.\d+$/.test(line.position))).toBe(true);
      tail.kill("SIGINT");
      expect((await tail.exited).code, tail.output).toBe(0);
    } finally {
      await tail.ensureDead();
    }
  });

  it("project create --with-default-environments --wait follows the bootstrap task's steps to success, through relay, NATS and the saga", async () => {
    const created = await runBin("dv", ["project", "create", "ops", "--with-default-environments", "--wait"], env, 60_000);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toMatch(/bootstrap task [0-9a-f-]{36}/);
    for (const step of ["create-dev", "create-prod", "apply-quota"]) expect(created.stderr).toContain(step);
    expect(created.stderr).toMatch(/succeeded/);
    const envs = await runBin("dv", ["env", "list", "--project", "ops", "--output", "json"], env);
    expect(envs.code, envs.stderr).toBe(0);
    expect(JSON.parse(envs.stdout).map((e: { name: string }) => e.name).sort()).toEqual(["dev", "prod"]);
    // The same task is there to read back, finished.
    const taskId = /bootstrap task ([0-9a-f-]{36})/.exec(created.stderr)![1]!;
    const task = await runBin("dv", ["task", "get", taskId, "--output", "json"], env);
    expect(JSON.parse(task.stdout)).toMatchObject({ status: "succeeded", kind: "sentral.project-bootstrap" });
  });

  it("SIGINT stops dv up cleanly with exit code 0", async () => {
    server.kill("SIGINT");
    const finished = await server.exited;
    expect(finished.code, server.output).toBe(0);
    expect(finished.signal).toBeNull();
    expect(await answers(`${api}/healthz`)).toBe(false);
    const after = await runBin("dv", ["tenant", "list"], env);
    expect(after.code).toBe(5); // connection refused
  });
});

describe("dv up with no DATABASE_URL: embedded PostgreSQL", () => {
  let dir: string;
  let server: Running | undefined;
  const namespace = testNamespace("e2eemb");

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "dv-e2e-embedded-"));
    // Run as root, PostgreSQL runs as the postgres user, which must be able to enter the data dir.
    await chmod(dir, 0o755);
  });

  afterAll(async () => {
    await server?.ensureDead();
    if (dir) await rm(dir, { recursive: true, force: true });
    const nc = await connectShared("e2e-cleanup");
    await dropNamespace(nc, namespace).finally(() => nc.close());
  });

  it("creates a persistent cluster in --data-dir, answers /healthz, stops cleanly, and reuses it on the next start", async () => {
    const port = await freePort();
    const dataDir = join(dir, "data");
    const env = childEnv({ DV_CONFIG: join(dir, "config.json"), DV_NATS_NAMESPACE: namespace.prefix });
    server = new Running("dv", ["up", "--port", String(port), "--data-dir", dataDir], env);
    await server.waitFor("/healthz", () => answers(`http://127.0.0.1:${port}/healthz`), 120_000);
    expect(server.stdout).toMatch(/database:\s+embedded/);
    expect(server.stdout).toContain("creating the embedded PostgreSQL cluster");
    // A generated bootstrap credential is printed once, as the exact login command.
    expect(server.stdout).toMatch(new RegExp(`dvid login --api http://127\\.0\\.0\\.1:${port} --bootstrap-secret \\S+`));
    expect((await stat(join(dataDir, "postgres", "PG_VERSION"))).isFile()).toBe(true);

    server.kill("SIGINT");
    const first = await server.exited;
    expect(first.code, server.output).toBe(0);
    await expect(stat(join(dataDir, "postgres", "postmaster.pid"))).rejects.toThrow(); // Postgres is down too

    // Second start: the same cluster, no initdb, no new bootstrap credential.
    server = new Running("dv", ["up", "--port", String(port), "--data-dir", dataDir], env);
    await server.waitFor("/healthz again", () => answers(`http://127.0.0.1:${port}/healthz`), 60_000);
    expect(server.stdout).not.toContain("creating the embedded PostgreSQL cluster");
    expect(server.stdout).not.toContain("--bootstrap-secret");
    server.kill("SIGTERM");
    const second = await server.exited;
    expect(second.code, server.output).toBe(0);
    await expect(stat(join(dataDir, "postgres", "postmaster.pid"))).rejects.toThrow();
  }, 240_000);
});
