import { afterEach, describe, expect, it } from "vitest";
import { cleanEnv, json, localServer, runCli } from "./support.ts";

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

async function api(handler: Parameters<typeof localServer>[0]) {
  const server = await localServer(handler);
  cleanup.push(server.close);
  return { server, env: cleanEnv({ DV_CONFIG: "/nonexistent/config.json", DV_API_URL: server.url, DV_TOKEN: "tok" }) };
}

const tenant = (id: string, name: string, status = "active") => ({ id, name, displayName: null, status, createdAt: new Date().toISOString() });

describe("dv tenant list", () => {
  it("follows nextCursor to the last page and prints one JSON array of the API's resources", async () => {
    const { server, env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.searchParams.get("cursor") === "c2") return json(response, 200, { items: [tenant("3", "c")], nextCursor: null });
      json(response, 200, { items: [tenant("1", "a"), tenant("2", "b")], nextCursor: "c2" });
    });
    const result = await runCli("dv", ["tenant", "list", "-o", "json"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout).map((t: { name: string }) => t.name)).toEqual(["a", "b", "c"]);
    expect(server.requests.map((r) => r.url)).toEqual(["/v1/tenants?limit=200", "/v1/tenants?limit=200&cursor=c2"]);
    expect(server.requests[0]!.headers.authorization).toBe("Bearer tok");

    const limited = await runCli("dv", ["tenant", "list", "--limit", "2", "-o", "json"], env);
    expect(JSON.parse(limited.stdout)).toHaveLength(2);
    expect(server.requests.at(-1)!.url).toBe("/v1/tenants?limit=2");
    expect((await runCli("dv", ["tenant", "list", "--limit", "0"], env)).code).toBe(1);
  });
});

describe("names and ids", () => {
  it("an argument is tried as an id, then as a name (?name=), preferring an active match", async () => {
    const { server, env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/v1/tenants/acme") return json(response, 404, { title: "Tenant not found", code: "tenant_not_found" }, "application/problem+json");
      if (url.pathname === "/v1/tenants" && url.searchParams.get("name") === "acme") {
        return json(response, 200, { items: [tenant("old", "acme", "suspended"), tenant("t-1", "acme")], nextCursor: null });
      }
      if (url.pathname === "/v1/tenants/t-1/projects" && request.method === "POST") {
        return json(response, 201, { id: "p-1", tenantId: "t-1", name: JSON.parse(request.body).name, status: "active" });
      }
      json(response, 500, { title: "unexpected", detail: request.url });
    });
    const result = await runCli("dv", ["project", "create", "web", "--tenant", "acme", "-o", "json"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ id: "p-1", name: "web" });
    const post = server.requests.find((r) => r.method === "POST")!;
    expect(post.url).toBe("/v1/tenants/t-1/projects");
    expect(JSON.parse(post.body)).toEqual({ name: "web" });
    expect(post.headers["idempotency-key"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("something that is neither an id nor a DNS label is not found without asking for it by name", async () => {
    const { server, env } = await api((_request, response) => json(response, 404, { title: "Tenant not found" }, "application/problem+json"));
    const result = await runCli("dv", ["tenant", "get", "Not A Name"], env);
    expect(result.code).toBe(2);
    expect(server.requests).toHaveLength(1);
  });

  it("without --tenant and without a context tenant, says how to set one (exit 1)", async () => {
    const { env } = await api((_request, response) => json(response, 500, {}));
    const result = await runCli("dv", ["project", "list"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("dv context set --tenant");
  });
});

describe("writes answered 202", () => {
  it("read the resource at its location, waiting for the write's position", async () => {
    const { server, env } = await api((request, response) => {
      if (request.method === "POST") {
        response.setHeader("location", "/v1/tenants/t-9");
        return json(response, 202, { status: "accepted", position: "812.44", location: "/v1/tenants/t-9" });
      }
      if (request.url === "/v1/tenants/t-9?minPosition=812.44") return json(response, 200, tenant("t-9", "slow"));
      json(response, 404, { title: "Not Found" });
    });
    const result = await runCli("dv", ["tenant", "create", "slow", "-o", "json"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ id: "t-9", name: "slow" });
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual(["POST /v1/tenants", "GET /v1/tenants/t-9?minPosition=812.44"]);
  });
});

describe("dv quota set", () => {
  const quota = (limits: Record<string, number | null>) => ({
    scope: "tenant", tenantId: "t-1", projectId: null,
    limits: { vcpus: null, memoryMiB: null, vms: null, hosts: null, networks: null, buckets: null, ...limits }, updatedAt: null,
  });

  it("changes only the named limits: GET, then PUT of the whole quota pinned with If-Match; `none` removes a limit", async () => {
    const { server, env } = await api((request, response) => {
      if (request.method === "GET") {
        response.setHeader("etag", 'W/"7"');
        return json(response, 200, quota({ vcpus: 64, vms: 10 }));
      }
      json(response, 200, quota(JSON.parse(request.body).limits));
    });
    const result = await runCli("dv", ["quota", "set", "--tenant", "t-1", "--memory-mib", "2048", "--vms", "none", "-o", "json"], env);
    expect(result.code, result.stderr).toBe(0);
    const put = server.requests.find((r) => r.method === "PUT")!;
    expect(put.url).toBe("/v1/tenants/t-1/quota");
    expect(put.headers["if-match"]).toBe('W/"7"');
    expect(JSON.parse(put.body)).toEqual({ limits: { vcpus: 64, memoryMiB: 2048, vms: null, hosts: null, networks: null, buckets: null } });
    expect(JSON.parse(result.stdout).limits).toMatchObject({ vcpus: 64, memoryMiB: 2048, vms: null });
  });

  it("a concurrent change (412) exits 3; no limit named exits 1; a bad number exits 1", async () => {
    const { env } = await api((request, response) => {
      if (request.method === "GET") return json(response, 200, quota({}));
      json(response, 412, { title: "The tenant is not at the version named in If-Match", status: 412 }, "application/problem+json");
    });
    expect((await runCli("dv", ["quota", "set", "--tenant", "t-1", "--vcpus", "8"], env)).code).toBe(3);
    expect((await runCli("dv", ["quota", "set", "--tenant", "t-1"], env)).code).toBe(1);
    const bad = await runCli("dv", ["quota", "set", "--tenant", "t-1", "--vcpus", "-3"], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--vcpus");
  });

  it("quota get shows one row per resource, unlimited where there is no limit", async () => {
    const { env } = await api((_request, response) => json(response, 200, quota({ vcpus: 4 })));
    const result = await runCli("dv", ["quota", "get", "--tenant", "t-1"], env);
    expect(result.stdout).toMatch(/^RESOURCE\s+LIMIT\nvcpus\s+4\nmemory-mib\s+unlimited\n/);
  });
});
