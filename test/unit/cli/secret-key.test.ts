import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadSecretKey } from "../../../adapters/secrets/key.ts";
import { CliError } from "../../../cli/core/errors.ts";
import { resolveSecretKey } from "../../../cli/up/secret-key.ts";

describe("dv up's secret store key", () => {
  const dirs: string[] = [];
  const dir = async () => {
    const d = await mkdtemp(join(tmpdir(), "dv-key-"));
    dirs.push(d);
    return d;
  };
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });

  it("generates a 0600 key file once and reuses it on the next start", async () => {
    const data = await dir();
    const first = await resolveSecretKey({}, data);
    expect(first.source).toContain("generated now");
    const file = join(data, "secret.key");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const key = loadSecretKey(first.env)!;
    const again = await resolveSecretKey({}, data);
    expect(again.source).not.toContain("generated");
    expect(loadSecretKey(again.env)!.id).toBe(key.id);
  });

  it("uses DV_SECRET_KEY when set and writes no file", async () => {
    const data = await dir();
    const inline = Buffer.alloc(32, 7).toString("base64");
    const resolved = await resolveSecretKey({ DV_SECRET_KEY: inline }, data);
    expect(resolved.source).toBe("DV_SECRET_KEY");
    await expect(stat(join(data, "secret.key"))).rejects.toThrow();
  });

  it("a damaged key file is a usage error naming the file, never silently replaced", async () => {
    const data = await dir();
    await writeFile(join(data, "secret.key"), "not a key\n", { mode: 0o600 });
    await expect(resolveSecretKey({}, data)).rejects.toBeInstanceOf(CliError);
    expect(await readFile(join(data, "secret.key"), "utf8")).toBe("not a key\n");
  });
});
