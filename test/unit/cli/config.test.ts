import { readdir, readFile, stat, writeFile, chmod } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { configPath, contextNameFor, loadConfig, normaliseApiUrl, saveConfig, upsertContext, emptyConfig } from "../../../cli/core/config.ts";
import { CliError } from "../../../cli/core/errors.ts";
import { cleanEnv, runCli, tempDir } from "./support.ts";

describe("config path", () => {
  it("is DV_CONFIG when set", () => {
    expect(configPath({ DV_CONFIG: "/somewhere/dv.json" })).toBe("/somewhere/dv.json");
  });
  it("else under XDG_CONFIG_HOME, else ~/.config/dv/config.json", () => {
    expect(configPath({ XDG_CONFIG_HOME: "/xdg" })).toBe("/xdg/dv/config.json");
    expect(configPath({})).toBe(join(homedir(), ".config", "dv", "config.json"));
  });
});

describe("config file", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(() => dir.remove());

  it("a missing file is an empty config", async () => {
    expect(await loadConfig(join(dir.path, "none.json"))).toEqual(emptyConfig());
  });

  it("is written 0600 in a 0700 directory it creates, atomically (no temporary file left)", async () => {
    const path = join(dir.path, "nested", "dv", "config.json");
    const config = upsertContext(emptyConfig(), { name: "local", apiUrl: "http://127.0.0.1:8080", token: "secret" });
    await saveConfig(path, { ...config, currentContext: "local" });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir.path, "nested", "dv"))).mode & 0o777).toBe(0o700);
    expect(await readdir(join(dir.path, "nested", "dv"))).toEqual(["config.json"]);
    expect(await loadConfig(path)).toEqual({ version: 1, currentContext: "local", contexts: [{ name: "local", apiUrl: "http://127.0.0.1:8080", token: "secret" }] });
  });

  it("rewrites a file that was too open as 0600, and warns when reading it", async () => {
    const path = join(dir.path, "config.json");
    await writeFile(path, JSON.stringify({ contexts: [] }));
    await chmod(path, 0o644);
    const warnings: string[] = [];
    const config = await loadConfig(path, (m) => warnings.push(m));
    expect(warnings.join()).toContain("readable by others");
    await saveConfig(path, config);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it("keeps fields it does not know (written by a newer CLI)", async () => {
    const path = join(dir.path, "config.json");
    await writeFile(path, JSON.stringify({ contexts: [{ name: "a", apiUrl: "http://x", future: { y: 1 } }], preferences: { color: false } }));
    const config = await loadConfig(path);
    await saveConfig(path, config);
    const raw = JSON.parse(await readFile(path, "utf8"));
    expect(raw.preferences).toEqual({ color: false });
    expect(raw.contexts[0].future).toEqual({ y: 1 });
  });

  it("refuses a broken file with a usage error naming it", async () => {
    const path = join(dir.path, "config.json");
    await writeFile(path, "{ not json");
    const error = (await loadConfig(path).catch((e: unknown) => e)) as CliError;
    expect(error).toBeInstanceOf(CliError);
    expect(error.exitCode).toBe(1);
    expect(error.message).toContain(path);
    await writeFile(path, JSON.stringify({ contexts: [{ name: "x" }] }));
    expect(((await loadConfig(path).catch((e: unknown) => e)) as CliError).message).toContain("no apiUrl");
  });
});

describe("API URLs and context names", () => {
  it("normalises URLs", () => {
    expect(normaliseApiUrl("127.0.0.1:8080")).toBe("http://127.0.0.1:8080");
    expect(normaliseApiUrl("https://api.example.com/")).toBe("https://api.example.com");
    expect(() => normaliseApiUrl("ftp://x")).toThrow(CliError);
    expect(() => normaliseApiUrl("http://user:pw@x")).toThrow(/credentials/);
  });
  it("names a context after host and port", () => {
    expect(contextNameFor("http://127.0.0.1:8080")).toBe("127.0.0.1-8080");
    expect(contextNameFor("https://api.example.com")).toBe("api.example.com-443");
    expect(contextNameFor("http://[::1]:9000")).toBe("--1-9000");
  });
});

describe("dv context", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let env: NodeJS.ProcessEnv;
  let path: string;
  beforeEach(async () => {
    dir = await tempDir();
    path = join(dir.path, "cfg", "config.json");
    env = cleanEnv({ DV_CONFIG: path });
  });
  afterEach(() => dir.remove());

  it("set creates a context (the first becomes current), use switches, current and list show it, without tokens", async () => {
    expect((await runCli("dv", ["context", "set", "lab"], env)).code).toBe(1); // creating needs --api
    expect((await runCli("dv", ["context", "set", "lab", "--api", "http://10.0.0.1:8080", "--tenant", "t1"], env)).code).toBe(0);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await runCli("dv", ["context", "set", "local", "--api", "127.0.0.1:8080"], env)).code).toBe(0);
    expect((await runCli("dv", ["context", "current"], env)).stdout).toBe("lab\n");

    const use = await runCli("dv", ["context", "use", "local"], env);
    expect(use.code).toBe(0);
    expect((await runCli("dv", ["context", "current"], env)).stdout).toBe("local\n");
    expect((await runCli("dv", ["context", "use", "nope"], env)).code).toBe(2);

    // A token written by login must never be printed by list.
    const raw = JSON.parse(await readFile(path, "utf8"));
    raw.contexts[1].token = "very-secret";
    await writeFile(path, JSON.stringify(raw));
    const list = await runCli("dv", ["context", "list", "-o", "json"], env);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toContain("very-secret");
    const parsed = JSON.parse(list.stdout);
    expect(parsed.currentContext).toBe("local");
    expect(parsed.contexts.map((c: { name: string; loggedIn: boolean; current: boolean }) => [c.name, c.loggedIn, c.current]))
      .toEqual([["lab", false, false], ["local", true, true]]);

    const table = await runCli("dv", ["context", "list"], env);
    expect(table.stdout.split("\n")[0]).toMatch(/^CURRENT\s+NAME\s+API\s+TENANT/);
    expect(table.stdout).toMatch(/\*\s+local\s+http:\/\/127\.0\.0\.1:8080/);
  });

  it("changing the tenant clears project and environment; an empty value clears a field; a new API forgets the token", async () => {
    await runCli("dv", ["context", "set", "c", "--api", "http://a:1", "--tenant", "t1", "--project", "p1", "--env", "e1"], env);
    const raw = JSON.parse(await readFile(path, "utf8"));
    raw.contexts[0].token = "tok";
    await writeFile(path, JSON.stringify(raw));

    const changed = await runCli("dv", ["context", "set", "--tenant", "t2"], env);
    expect(changed.code).toBe(0);
    expect(changed.stderr).toContain("project p1 cleared");
    let context = JSON.parse(await readFile(path, "utf8")).contexts[0];
    expect(context).toMatchObject({ tenant: "t2", token: "tok" });
    expect(context.project).toBeUndefined();
    expect(context.environment).toBeUndefined();

    await runCli("dv", ["context", "set", "--project", "p9", "--env", "e9"], env);
    await runCli("dv", ["context", "set", "--env", ""], env);
    context = JSON.parse(await readFile(path, "utf8")).contexts[0];
    expect(context).toMatchObject({ tenant: "t2", project: "p9" });
    expect(context.environment).toBeUndefined();

    await runCli("dv", ["context", "set", "--api", "http://b:2"], env);
    context = JSON.parse(await readFile(path, "utf8")).contexts[0];
    expect(context.apiUrl).toBe("http://b:2");
    expect(context.token).toBeUndefined();
  });

  it("--context and DV_CONTEXT pick a context for one command; an unknown one is a usage error", async () => {
    await runCli("dv", ["context", "set", "a", "--api", "http://a:1"], env);
    await runCli("dv", ["context", "set", "b", "--api", "http://b:1"], env);
    expect((await runCli("dv", ["--context", "b", "context", "current"], env)).stdout).toBe("b\n");
    expect((await runCli("dv", ["context", "current", "--context", "b"], env)).stdout).toBe("b\n");
    expect((await runCli("dv", ["context", "current"], { ...env, DV_CONTEXT: "b" })).stdout).toBe("b\n");
    expect((await runCli("dv", ["context", "current", "--context", "zzz"], env)).code).toBe(1);
  });

  it("delete removes a context and unsets it when current", async () => {
    await runCli("dv", ["context", "set", "a", "--api", "http://a:1"], env);
    expect((await runCli("dv", ["context", "delete", "a"], env)).code).toBe(0);
    expect((await runCli("dv", ["context", "current"], env)).code).toBe(1);
    expect((await runCli("dv", ["context", "delete", "a"], env)).code).toBe(2);
  });
});
