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

const letter = (sequence: number, extra: Record<string, unknown> = {}) => ({
  sequence,
  originalSubject: "dv.ledger.cmd.record.dc1",
  originalStream: "DV_WORK",
  originalSequence: 40 + sequence,
  deliveryCount: 5,
  error: `boom ${sequence}`,
  taskId: "t-1",
  requestId: "t-1:one:1",
  eventType: null,
  correlationId: "c-1",
  deadLetteredAt: new Date(Date.now() - 90_000).toISOString(),
  replay: null,
  ...extra,
});
const problem = (status: number, code: string, title: string) => ({ type: `https://dataverket.dev/problems/${code}`, title, status, code });

describe("dv dlq", () => {
  it("list follows the cursor and prints a table (error last) or the API's items as one JSON array", async () => {
    const { server, env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname !== "/v1/dlq") return json(response, 500, {});
      if (url.searchParams.get("cursor") === "c2") return json(response, 200, { items: [letter(3, { replay: { replayedAt: new Date().toISOString(), messageId: "m", stream: "DV_WORK", sequence: 9 } })], nextCursor: null });
      json(response, 200, { items: [letter(1), letter(2)], nextCursor: "c2" });
    });
    const listed = await runCli("dv", ["dlq", "list", "-o", "json"], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).map((d: { sequence: number }) => d.sequence)).toEqual([1, 2, 3]);
    expect(server.requests.map((r) => r.url)).toEqual(["/v1/dlq?limit=200", "/v1/dlq?limit=200&cursor=c2"]);
    expect(server.requests[0]!.headers.authorization).toBe("Bearer tok");

    const table = await runCli("dv", ["dlq", "list"], env);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^SEQ\s+SUBJECT\s+DELIVERIES\s+TASK\s+AGE\s+REPLAYED\s+ERROR$/);
    expect(lines[1]).toMatch(/^1\s+dv\.ledger\.cmd\.record\.dc1\s+5\s+t-1\s+90s\s+no\s+boom 1$/);
    expect(lines[3]).toMatch(/^3\s.*\s0s\s+boom 3$/);
  });

  it("an empty queue says so on stderr and prints nothing on stdout", async () => {
    const { env } = await api((_request, response) => json(response, 200, { items: [], nextCursor: null }));
    const result = await runCli("dv", ["dlq", "list"], env);
    expect(result).toMatchObject({ code: 0, stdout: "" });
    expect(result.stderr).toContain("empty");
  });

  it("show prints where it came from, why it died, headers and the body", async () => {
    const { server, env } = await api((_request, response) =>
      json(response, 200, { ...letter(7), headers: { "Dv-Error": "boom 7" }, bodyEncoding: "text", body: "raw \u001b[31mred" }),
    );
    const result = await runCli("dv", ["dlq", "show", "7"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(server.requests[0]!.url).toBe("/v1/dlq/7");
    expect(result.stdout).toMatch(/^sequence:\s+7$/m);
    expect(result.stdout).toMatch(/^stream:\s+DV_WORK #47$/m);
    expect(result.stdout).toMatch(/^error:\s+boom 7$/m);
    expect(result.stdout).toContain("headers:\n  Dv-Error: boom 7\n");
    expect(result.stdout).toContain("body (text):\nraw \\u001b[31mred\n");
    const asJson = await runCli("dv", ["dlq", "show", "7", "-o", "json"], env);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ sequence: 7, body: "raw \u001b[31mred" });
    expect((await runCli("dv", ["dlq", "show", "seven"], env)).code).toBe(1);
    expect((await runCli("dv", ["dlq", "show", "0"], env)).code).toBe(1);
  });

  it("replay POSTs with an Idempotency-Key and says when nothing was published", async () => {
    let calls = 0;
    const { server, env } = await api((_request, response) => {
      calls++;
      const replay = { replayedAt: "2026-01-01T00:00:00.000Z", messageId: "DV_WORK:47:replay:7", stream: "DV_WORK", sequence: 99 };
      json(response, 200, { published: calls === 1, replay, deadLetter: { ...letter(7), replay, headers: {}, bodyEncoding: "json", body: "{}" } });
    });
    const first = await runCli("dv", ["dlq", "replay", "7"], env);
    expect(first.code, first.stderr).toBe(0);
    expect(server.requests[0]!).toMatchObject({ method: "POST", url: "/v1/dlq/7/replay" });
    expect(server.requests[0]!.headers["idempotency-key"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(first.stdout).toMatch(/^published:\s+yes$/m);
    expect(first.stdout).toMatch(/^message-id:\s+DV_WORK:47:replay:7$/m);
    expect(first.stderr).toBe("");
    const second = await runCli("dv", ["dlq", "replay", "7", "-o", "json"], env);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout).published).toBe(false);
    expect(second.stderr).toContain("replayed already");
  });

  it("maps the API's refusals to exit codes: 403 -> 4, 404 -> 2, 503 -> 5", async () => {
    const { env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/v1/dlq") return json(response, 403, problem(403, "forbidden", "Not allowed"), "application/problem+json");
      if (url.pathname === "/v1/dlq/5") return json(response, 404, problem(404, "dead_letter_not_found", "Dead letter not found"), "application/problem+json");
      json(response, 503, problem(503, "dlq_unavailable", "The dead-letter queue cannot be reached"), "application/problem+json");
    });
    const forbidden = await runCli("dv", ["dlq", "list"], env);
    expect(forbidden.code).toBe(4);
    expect(forbidden.stderr).toContain("Not allowed");
    expect((await runCli("dv", ["dlq", "show", "5"], env)).code).toBe(2);
    const down = await runCli("dv", ["dlq", "replay", "6"], env);
    expect(down.code).toBe(5);
    expect(down.stderr).toContain("dead-letter queue cannot be reached");
  });
});
