import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CliError, ExitCode } from "../../../cli/core/errors.ts";
import { DEVICE_CODE_GRANT, runDeviceFlow, type DevicePrompt } from "../../../cli/identity/device-flow.ts";
import { cleanEnv, json, localServer, runCli, tempDir, type RecordedRequest } from "./support.ts";

/**
 * An OAuth provider on a real local HTTP server: the device authorization
 * endpoint hands out a code, the token endpoint answers each poll with the
 * next scripted reply.
 */
async function provider(replies: Array<{ status: number; body: Record<string, unknown> }>, device: Record<string, unknown> = {}) {
  const polls: RecordedRequest[] = [];
  const server = await localServer((request, response) => {
    if (request.url === "/device") {
      return json(response, 200, {
        device_code: "dev-123",
        user_code: "WDJB-MJHT",
        verification_uri: "https://id.example/device",
        verification_uri_complete: "https://id.example/device?user_code=WDJB-MJHT",
        expires_in: 600,
        interval: 2,
        ...device,
      });
    }
    if (request.url === "/token") {
      polls.push(request);
      const reply = replies.shift() ?? { status: 500, body: { error: "script exhausted" } };
      return json(response, reply.status, reply.body);
    }
    json(response, 404, {});
  });
  return { server, polls };
}

const pending = { status: 400, body: { error: "authorization_pending" } };
const slowDown = { status: 400, body: { error: "slow_down" } };

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup) await fn();
  cleanup = [];
});

/** Sleeps recorded instead of waited, on a fake clock. */
function fakeTime() {
  let now = 1_000_000;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}

describe("device flow (RFC 8628) against a local HTTP server", () => {
  it("prompts once, polls at the interval, adds 5 s on slow_down for every later poll, and returns the tokens", async () => {
    const { server, polls } = await provider([pending, slowDown, pending, { status: 200, body: { access_token: "at-1", token_type: "Bearer", expires_in: 3600, refresh_token: "rt-1", id_token: "id-1" } }]);
    cleanup.push(server.close);
    const time = fakeTime();
    const prompts: DevicePrompt[] = [];
    const tokens = await runDeviceFlow({
      deviceAuthorizationEndpoint: `${server.url}/device`,
      tokenEndpoint: `${server.url}/token`,
      clientId: "dv-cli",
      scope: "openid profile",
      onPrompt: (p) => prompts.push(p),
      sleep: time.sleep,
      now: time.now,
    });
    expect(tokens).toEqual({ accessToken: "at-1", tokenType: "Bearer", expiresIn: 3600, refreshToken: "rt-1", idToken: "id-1" });
    expect(prompts).toEqual([{ verificationUri: "https://id.example/device", verificationUriComplete: "https://id.example/device?user_code=WDJB-MJHT", userCode: "WDJB-MJHT", expiresInSeconds: 600 }]);
    // interval 2 s; slow_down after the 2nd poll raises it to 7 s for the rest.
    expect(time.sleeps).toEqual([2000, 2000, 7000, 7000]);
    expect(polls).toHaveLength(4);
    const form = new URLSearchParams(polls[0]!.body);
    expect(Object.fromEntries(form)).toEqual({ grant_type: DEVICE_CODE_GRANT, device_code: "dev-123", client_id: "dv-cli" });
    expect(polls[0]!.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    const deviceRequest = server.requests.find((r) => r.url === "/device")!;
    expect(Object.fromEntries(new URLSearchParams(deviceRequest.body))).toEqual({ client_id: "dv-cli", scope: "openid profile" });
  });

  it("uses 5 s when the server names no interval", async () => {
    const { server } = await provider([{ status: 200, body: { access_token: "x" } }], { interval: undefined });
    cleanup.push(server.close);
    const time = fakeTime();
    await runDeviceFlow({ deviceAuthorizationEndpoint: `${server.url}/device`, tokenEndpoint: `${server.url}/token`, clientId: "c", onPrompt: () => {}, sleep: time.sleep, now: time.now });
    expect(time.sleeps).toEqual([5000]);
  });

  it("access_denied stops with an auth error (exit 4)", async () => {
    const { server, polls } = await provider([pending, { status: 400, body: { error: "access_denied" } }, pending]);
    cleanup.push(server.close);
    const time = fakeTime();
    const error = (await runDeviceFlow({ deviceAuthorizationEndpoint: `${server.url}/device`, tokenEndpoint: `${server.url}/token`, clientId: "c", onPrompt: () => {}, sleep: time.sleep, now: time.now }).catch((e: unknown) => e)) as CliError;
    expect(error).toBeInstanceOf(CliError);
    expect(error.exitCode).toBe(ExitCode.auth);
    expect(error.message).toContain("denied");
    expect(polls).toHaveLength(2);
  });

  it("expired_token, or the code's own expiry passing, stops with exit 4", async () => {
    const a = await provider([{ status: 400, body: { error: "expired_token" } }]);
    cleanup.push(a.server.close);
    const t1 = fakeTime();
    const e1 = (await runDeviceFlow({ deviceAuthorizationEndpoint: `${a.server.url}/device`, tokenEndpoint: `${a.server.url}/token`, clientId: "c", onPrompt: () => {}, sleep: t1.sleep, now: t1.now }).catch((e: unknown) => e)) as CliError;
    expect(e1.exitCode).toBe(ExitCode.auth);
    expect(e1.message).toContain("expired");

    // expires_in 5 s, interval 2 s: polls at 2 s and 4 s, then the deadline passes without another request.
    const b = await provider(Array.from({ length: 10 }, () => pending), { expires_in: 5 });
    cleanup.push(b.server.close);
    const t2 = fakeTime();
    const e2 = (await runDeviceFlow({ deviceAuthorizationEndpoint: `${b.server.url}/device`, tokenEndpoint: `${b.server.url}/token`, clientId: "c", onPrompt: () => {}, sleep: t2.sleep, now: t2.now }).catch((e: unknown) => e)) as CliError;
    expect(e2.exitCode).toBe(ExitCode.auth);
    expect(b.polls).toHaveLength(2);
  });

  it("a 5xx while polling backs off (doubling the interval) and keeps polling", async () => {
    const { server } = await provider([{ status: 503, body: {} }, pending, { status: 200, body: { access_token: "ok" } }]);
    cleanup.push(server.close);
    const time = fakeTime();
    const tokens = await runDeviceFlow({ deviceAuthorizationEndpoint: `${server.url}/device`, tokenEndpoint: `${server.url}/token`, clientId: "c", onPrompt: () => {}, sleep: time.sleep, now: time.now });
    expect(tokens.accessToken).toBe("ok");
    expect(time.sleeps).toEqual([2000, 4000, 4000]);
  });

  it("a refused device authorization request is reported with the provider's error", async () => {
    const server = await localServer((_request, response) => json(response, 400, { error: "invalid_client", error_description: "unknown client dv-cli" }));
    cleanup.push(server.close);
    const error = (await runDeviceFlow({ deviceAuthorizationEndpoint: `${server.url}/device`, tokenEndpoint: `${server.url}/token`, clientId: "dv-cli", onPrompt: () => {} }).catch((e: unknown) => e)) as CliError;
    expect(error.exitCode).toBe(ExitCode.auth);
    expect(error.message).toContain("invalid_client: unknown client dv-cli");
  });

  it("aborting (Ctrl-C) stops the wait", async () => {
    const { server } = await provider(Array.from({ length: 10 }, () => pending));
    cleanup.push(server.close);
    const controller = new AbortController();
    const flow = runDeviceFlow({ deviceAuthorizationEndpoint: `${server.url}/device`, tokenEndpoint: `${server.url}/token`, clientId: "c", onPrompt: () => setTimeout(() => controller.abort(new Error("cancelled")), 10), signal: controller.signal });
    await expect(flow).rejects.toThrow("cancelled");
  });
});

describe("dvid login", () => {
  it("without a secret, follows /v1/auth/config to the device flow, checks the token with whoami and saves the context", async () => {
    const server = await localServer((request, response) => {
      const base = `http://${request.headers.host}`;
      switch (request.url) {
        case "/v1/auth/config":
          return json(response, 200, { oidc: { issuer: base, clientId: "dv-cli", deviceAuthorizationEndpoint: `${base}/device`, tokenEndpoint: `${base}/token` } });
        case "/device":
          return json(response, 200, { device_code: "d", user_code: "ABCD-EFGH", verification_uri: `${base}/activate`, expires_in: 60, interval: 0 });
        case "/token":
          return json(response, 200, { access_token: "oidc-token", expires_in: 300 });
        case "/v1/auth/whoami":
          if (request.headers.authorization !== "Bearer oidc-token") return json(response, 401, { title: "Unauthorized" });
          return json(response, 200, { subject: "ada@example.com", issuer: base, roles: [{ role: "platform-admin" }] });
        default:
          return json(response, 404, { title: "Not Found" });
      }
    });
    cleanup.push(server.close);
    const dir = await tempDir();
    cleanup.push(dir.remove);
    const env = cleanEnv({ DV_CONFIG: join(dir.path, "config.json") });

    const login = await runCli("dvid", ["login", "--api", server.url], env);
    expect(login.stderr).toContain("ABCD-EFGH");
    expect(login.stderr).toContain(`${server.url}/activate`);
    expect(login.code).toBe(0);
    expect(login.stdout).toContain("as ada@example.com");

    const saved = JSON.parse(await readFile(join(dir.path, "config.json"), "utf8"));
    expect(saved.currentContext).toBe(saved.contexts[0].name);
    expect(saved.contexts[0]).toMatchObject({ apiUrl: server.url, token: "oidc-token" });

    const token = await runCli("dvid", ["token"], env);
    expect(token).toMatchObject({ code: 0, stdout: "oidc-token\n" });
    const whoami = await runCli("dvid", ["whoami"], env);
    expect(whoami.stdout).toMatch(/subject:\s+ada@example.com/);
    expect(whoami.stdout).toMatch(/roles:\s+platform-admin/);

    expect((await runCli("dvid", ["logout"], env)).code).toBe(0);
    expect((await runCli("dvid", ["token"], env)).code).toBe(4);
    expect((await runCli("dvid", ["whoami"], env)).code).toBe(4);
  });

  it("without a secret and without OIDC, says how to log in (exit 1)", async () => {
    const server = await localServer((_request, response) => json(response, 200, { oidc: null }));
    cleanup.push(server.close);
    const dir = await tempDir();
    cleanup.push(dir.remove);
    const result = await runCli("dvid", ["login", "--api", server.url], cleanEnv({ DV_CONFIG: join(dir.path, "c.json") }));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("--bootstrap-secret");
  });

  it("an OIDC provider without a CLI client id or device endpoint is explained, not attempted (exit 1)", async () => {
    const server = await localServer((_request, response) =>
      json(response, 200, { oidc: { issuer: "https://id.example", clientId: null, deviceAuthorizationEndpoint: "https://id.example/device", tokenEndpoint: "https://id.example/token" } }));
    cleanup.push(server.close);
    const dir = await tempDir();
    cleanup.push(dir.remove);
    const result = await runCli("dvid", ["login", "--api", server.url], cleanEnv({ DV_CONFIG: join(dir.path, "c.json") }));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("DV_OIDC_CLIENT_ID");
    expect(server.requests).toHaveLength(1);
  });

  it("with --bootstrap-secret, exchanges it at POST /v1/auth/token; a wrong one exits 4 and saves nothing", async () => {
    const server = await localServer((request, response) => {
      if (request.url !== "/v1/auth/token" || request.method !== "POST") return json(response, 404, {});
      const body = JSON.parse(request.body);
      if (body.grant_type === "bootstrap" && body.secret === "right") return json(response, 200, { access_token: "boot-token", expires_in: 3600, subject: "bootstrap-admin" });
      json(response, 401, { title: "Unauthorized", detail: "invalid bootstrap secret" }, "application/problem+json");
    });
    cleanup.push(server.close);
    const dir = await tempDir();
    cleanup.push(dir.remove);
    const env = cleanEnv({ DV_CONFIG: join(dir.path, "config.json") });

    const wrong = await runCli("dvid", ["login", "--api", server.url, "--bootstrap-secret", "wrong"], env);
    expect(wrong.code).toBe(4);
    expect(wrong.stderr).toContain("invalid bootstrap secret");
    await expect(readFile(join(dir.path, "config.json"))).rejects.toThrow();

    const right = await runCli("dvid", ["-o", "json", "login", "--api", server.url, "--bootstrap-secret", "right", "--context", "local"], env);
    expect(right.code).toBe(0);
    expect(JSON.parse(right.stdout)).toMatchObject({ context: "local", apiUrl: server.url, subject: "bootstrap-admin" });
    const saved = JSON.parse(await readFile(join(dir.path, "config.json"), "utf8"));
    expect(saved).toMatchObject({ currentContext: "local", contexts: [{ name: "local", token: "boot-token" }] });
  });
});
