import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CliError, ExitCode, exitCodeForStatus } from "../../../cli/core/errors.ts";
import { ApiClient } from "../../../cli/core/http.ts";
import { parseProblem } from "../../../cli/core/problem.ts";
import { report } from "../../../cli/main.ts";
import { captureIo, cleanEnv, json, localServer, runCli, tempDir } from "./support.ts";

describe("exit code for an HTTP status", () => {
  it.each([
    [400, ExitCode.usage],
    [422, ExitCode.usage],
    [405, ExitCode.usage],
    [401, ExitCode.auth],
    [403, ExitCode.auth],
    [404, ExitCode.notFound],
    [410, ExitCode.notFound],
    [409, ExitCode.conflict],
    [412, ExitCode.conflict],
    [429, ExitCode.server],
    [500, ExitCode.server],
    [502, ExitCode.server],
    [503, ExitCode.server],
  ])("%i -> %i", (status, code) => {
    expect(exitCodeForStatus(status)).toBe(code);
  });

  it("keeps the documented numbers", () => {
    expect(ExitCode).toEqual({ ok: 0, usage: 1, notFound: 2, conflict: 3, auth: 4, server: 5 });
  });
});

describe("problem details", () => {
  it("reads RFC 9457 fields and this API's issues list", () => {
    const problem = parseProblem(422, "Unprocessable Entity", {
      type: "https://dataverket.dev/problems/validation",
      title: "Invalid request",
      status: 422,
      detail: "1 field is invalid",
      issues: [{ path: "name", message: "must be a DNS label", code: "invalid_format" }],
    });
    expect(problem).toMatchObject({ title: "Invalid request", status: 422, detail: "1 field is invalid" });
    expect(problem.fields).toEqual([{ field: "name", message: "must be a DNS label" }]);
  });

  it("reads other conventions for failing fields", () => {
    expect(parseProblem(400, "", { title: "x", "invalid-params": [{ name: "age", reason: "must be positive" }] }).fields)
      .toEqual([{ field: "age", message: "must be positive" }]);
    expect(parseProblem(400, "", { title: "x", errors: [{ pointer: "/limits/vcpus", detail: "too big" }] }).fields)
      .toEqual([{ field: "limits.vcpus", message: "too big" }]);
    expect(parseProblem(400, "", { title: "x", errors: { name: ["required"] } }).fields).toEqual([{ field: "name", message: "required" }]);
    expect(parseProblem(400, "", { title: "x", issues: [{ path: ["limits", "vcpus"], message: "bad" }] }).fields)
      .toEqual([{ field: "limits.vcpus", message: "bad" }]);
  });

  it("makes a title out of a body that is not a problem", () => {
    expect(parseProblem(502, "Bad Gateway", "<html>nginx</html>")).toMatchObject({ title: "Bad Gateway", fields: [] });
    expect(parseProblem(500, "Internal Server Error", "boom")).toMatchObject({ title: "Internal Server Error", detail: "boom" });
    expect(parseProblem(404, "Not Found", { message: "Route GET:/v1/x not found", error: "Not Found", statusCode: 404 }).title).toBe("Not Found");
  });
});

describe("ApiClient against a real HTTP server", () => {
  let server: Awaited<ReturnType<typeof localServer>>;
  beforeAll(async () => {
    server = await localServer((request, response) => {
      const status = Number(new URL(request.url, "http://x").pathname.slice(1));
      if (status === 200) return json(response, 200, { ok: true, auth: request.headers.authorization ?? null });
      json(response, status, {
        type: "about:blank", title: `problem ${status}`, status, detail: "details here",
        issues: status === 422 ? [{ path: "name", message: "must be a DNS label" }] : [],
      }, "application/problem+json");
    });
  });
  afterAll(() => server.close());

  it("sends the bearer token and parses JSON", async () => {
    const client = new ApiClient({ apiUrl: server.url, token: "tok" });
    expect(await client.get("/200")).toEqual({ ok: true, auth: "Bearer tok" });
  });

  it.each([
    [401, ExitCode.auth], [403, ExitCode.auth], [404, ExitCode.notFound], [409, ExitCode.conflict],
    [412, ExitCode.conflict], [422, ExitCode.usage], [500, ExitCode.server], [503, ExitCode.server],
  ])("status %i becomes a CliError with exit code %i and the problem", async (status, code) => {
    const client = new ApiClient({ apiUrl: server.url, token: "tok" });
    const error = await client.get(`/${status}`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).exitCode).toBe(code);
    expect((error as CliError).problem?.title).toBe(`problem ${status}`);
  });

  it("connection refused is exit 5 with a hint, not a stack", async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const p = (probe.address() as { port: number }).port;
        probe.close(() => resolve(p));
      });
    });
    const error = (await new ApiClient({ apiUrl: `http://127.0.0.1:${port}` }).get("/").catch((e: unknown) => e)) as CliError;
    expect(error.exitCode).toBe(ExitCode.server);
    expect(error.message).toContain("connection refused");
    expect(error.hint).toContain("dv up");
  });

  it("retries a GET after a 503 and a POST only when it carries an Idempotency-Key", async () => {
    let calls = 0;
    const flaky = await localServer((_request, response) => {
      calls++;
      if (calls % 2 === 1) return json(response, 503, { title: "busy" });
      json(response, 200, { ok: calls });
    });
    try {
      const client = new ApiClient({ apiUrl: flaky.url });
      expect(await client.get("/x")).toEqual({ ok: 2 });
      const plainPost = (await client.post("/x", {}).catch((e: unknown) => e)) as CliError;
      expect(plainPost.exitCode).toBe(ExitCode.server);
      expect(calls).toBe(3);
      expect(await client.post("/x", {}, { headers: { "idempotency-key": "k1" } })).toEqual({ ok: 4 });
      expect(flaky.requests.at(-1)!.headers["idempotency-key"]).toBe("k1");
    } finally {
      await flaky.close();
    }
  });

  it("a server that does not answer in time is exit 5", async () => {
    const slow = await localServer(() => new Promise(() => {}));
    try {
      const error = (await new ApiClient({ apiUrl: slow.url, timeoutMs: 200 }).get("/").catch((e: unknown) => e)) as CliError;
      expect(error.exitCode).toBe(ExitCode.server);
      expect(error.message).toMatch(/no answer .* within/);
    } finally {
      await slow.close();
    }
  });
});

describe("reporting", () => {
  it("prints title, detail and failing fields to stderr, never a stack", () => {
    const io = captureIo();
    const problem = parseProblem(422, "", { title: "Invalid request", detail: "name is invalid", issues: [{ path: "name", message: "must be a DNS label" }] });
    const code = report(new CliError(ExitCode.usage, "Invalid request: name is invalid", problem), io, {});
    expect(code).toBe(1);
    expect(io.stdout).toBe("");
    expect(io.stderr).toBe("error: Invalid request: name is invalid\n  - name: must be a DNS label\n");
  });

  it("an unexpected error is one line (the stack only with DV_DEBUG)", () => {
    const io = captureIo();
    expect(report(new TypeError("oops"), io, {})).toBe(ExitCode.server);
    expect(io.stderr).toBe("error: oops\n");
  });
});

describe("exit codes end to end through main()", () => {
  it("usage errors from commander exit 1; help and version exit 0", async () => {
    const dir = await tempDir();
    const env = cleanEnv({ DV_CONFIG: `${dir.path}/config.json` });
    try {
      expect((await runCli("dv", ["nonsense"], env)).code).toBe(1);
      expect((await runCli("dv", ["tenant", "list", "--bogus"], env)).code).toBe(1);
      expect((await runCli("dv", ["--output", "yaml", "tenant", "list"], env)).code).toBe(1);
      expect((await runCli("dv", ["tenant", "get"], env)).code).toBe(1);
      expect((await runCli("dv", ["--help"], env)).code).toBe(0);
      expect((await runCli("dv", ["--version"], env)).code).toBe(0);
      expect((await runCli("dv", ["tenant", "create", "--help"], env)).code).toBe(0);
      // No context, no token: auth.
      const none = await runCli("dv", ["tenant", "list"], env);
      expect(none.code).toBe(4);
      expect(none.stderr).toContain("dvid login");
    } finally {
      await dir.remove();
    }
  });

  it("bins without commands print the plan: exit 0 for help and a bare run, 1 for an unknown command", async () => {
    const env = cleanEnv({ DV_CONFIG: "/nonexistent/config.json" });
    const help = await runCli("dvce", ["--help"], env);
    expect(help.code).toBe(0);
    for (const command of ["host", "hypervisor", "vm", "image", "disk"]) expect(help.stdout).toMatch(new RegExp(`^  ${command}\\b`, "m"));
    expect(help.stdout).toContain("VM resize and migration");
    const bare = await runCli("dvnet", [], env);
    expect(bare.code).toBe(0);
    for (const area of ["networks", "VLANs", "IPAM", "DNS"]) expect(bare.stdout).toContain(area);
    expect((await runCli("dvke", ["--help"], env)).stdout).toContain("Kubernetes clusters");
    expect((await runCli("dvos", ["--help"], env)).stdout).toContain("object storage");
    expect((await runCli("dvapp", ["--help"], env)).stdout).toContain("apps");
    const unknown = await runCli("dvce", ["cluster", "list"], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("unknown command");
  });

  it("a 404 from the API exits 2, a 409 exits 3, with the problem on stderr", async () => {
    const api = await localServer((request, response) => {
      if (request.url.startsWith("/v1/tenants/missing")) return json(response, 404, { title: "Not Found", status: 404, detail: "no tenant missing" }, "application/problem+json");
      if (request.url.startsWith("/v1/tenants")) {
        if (request.method === "POST") return json(response, 409, { title: "Conflict", status: 409, detail: "a tenant named acme exists" }, "application/problem+json");
        return json(response, 200, { items: [] });
      }
      json(response, 500, { title: "boom" });
    });
    try {
      const env = cleanEnv({ DV_CONFIG: "/nonexistent/config.json", DV_API_URL: api.url, DV_TOKEN: "t" });
      const missing = await runCli("dv", ["tenant", "get", "missing"], env);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain("not found");
      const conflict = await runCli("dv", ["tenant", "create", "acme"], env);
      expect(conflict.code).toBe(3);
      expect(conflict.stderr).toContain("a tenant named acme exists");
    } finally {
      await api.close();
    }
  });
});
