import { CliError, ExitCode } from "../core/errors.ts";
import { unreachable } from "../core/http.ts";

/**
 * OAuth 2.0 Device Authorization Grant (RFC 8628) for `dvid login` against an
 * OIDC provider: ask for a device code, show the user where to enter it, then
 * poll the token endpoint until they approve, deny, or the code expires.
 */

export const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

export interface DevicePrompt {
  readonly verificationUri: string;
  readonly verificationUriComplete?: string;
  readonly userCode: string;
  readonly expiresInSeconds: number;
}

export interface DeviceFlowOptions {
  readonly deviceAuthorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly clientId: string;
  readonly scope?: string;
  /** Called once, with what the user must do. */
  readonly onPrompt: (prompt: DevicePrompt) => void;
  readonly fetch?: typeof fetch;
  /** Injected by tests; waits `ms` (rejects when `signal` aborts). */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly now?: () => number;
  readonly signal?: AbortSignal;
  /** Per HTTP request (default 30 s). */
  readonly requestTimeoutMs?: number;
}

export interface DeviceFlowTokens {
  readonly accessToken: string;
  readonly tokenType?: string;
  readonly idToken?: string;
  readonly refreshToken?: string;
  readonly expiresIn?: number;
}

/** RFC 8628 3.2: the default polling interval when the server names none. */
export const DEFAULT_INTERVAL_SECONDS = 5;
/** RFC 8628 3.5: slow_down adds 5 s to this and every later interval. */
export const SLOW_DOWN_SECONDS = 5;
/** Back-off cap after network errors or 5xx while polling. */
const MAX_INTERVAL_SECONDS = 60;

const defaultSleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });

export async function runDeviceFlow(options: DeviceFlowOptions): Promise<DeviceFlowTokens> {
  const fetchImpl = options.fetch ?? fetch;
  const sleep = options.sleep ?? defaultSleep;
  const now = options.now ?? Date.now;
  const timeoutMs = options.requestTimeoutMs ?? 30_000;

  const post = async (url: string, form: Record<string, string>) => {
    const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])];
    let response: Response;
    try {
      response = await fetchImpl(url, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
        body: new URLSearchParams(form).toString(),
        signal: AbortSignal.any(signals),
      });
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw unreachable(new URL(url).origin, error, timeoutMs);
    }
    const text = await response.text();
    let body: Record<string, unknown> = {};
    try {
      const parsed: unknown = text ? JSON.parse(text) : {};
      if (typeof parsed === "object" && parsed !== null) body = parsed as Record<string, unknown>;
    } catch {
      // not JSON: handled by status below
    }
    return { status: response.status, body };
  };

  // 1. Device authorization request (RFC 8628 3.1).
  const authorization = await post(options.deviceAuthorizationEndpoint, {
    client_id: options.clientId,
    ...(options.scope ? { scope: options.scope } : {}),
  });
  if (authorization.status !== 200) throw oauthFailure("the device authorization request was refused", authorization.status, authorization.body);
  const a = authorization.body;
  const deviceCode = stringField(a, "device_code");
  const userCode = stringField(a, "user_code");
  // Some providers (Google) still say verification_url.
  const verificationUri = stringField(a, "verification_uri") ?? stringField(a, "verification_url");
  if (!deviceCode || !userCode || !verificationUri) {
    throw new CliError(ExitCode.server, "the identity provider's device authorization answer lacks device_code, user_code or verification_uri");
  }
  const expiresIn = numberField(a, "expires_in") ?? 600;
  let intervalSeconds = numberField(a, "interval") ?? DEFAULT_INTERVAL_SECONDS;
  const complete = stringField(a, "verification_uri_complete");
  options.onPrompt({ verificationUri, userCode, expiresInSeconds: expiresIn, ...(complete ? { verificationUriComplete: complete } : {}) });

  // 2. Poll the token endpoint (RFC 8628 3.4, 3.5) until approved, denied or expired.
  const deadline = now() + expiresIn * 1000;
  for (;;) {
    await sleep(intervalSeconds * 1000, options.signal);
    if (now() >= deadline) throw new CliError(ExitCode.auth, "the login code expired before it was approved", undefined, "run `dvid login` again");
    let answer: { status: number; body: Record<string, unknown> };
    try {
      answer = await post(options.tokenEndpoint, { grant_type: DEVICE_CODE_GRANT, device_code: deviceCode, client_id: options.clientId });
    } catch (error) {
      // A lost connection is not a refusal: back off and keep polling until the code expires.
      if (error instanceof CliError && error.exitCode === ExitCode.server) {
        intervalSeconds = Math.min(intervalSeconds * 2, MAX_INTERVAL_SECONDS);
        continue;
      }
      throw error;
    }
    if (answer.status === 200) {
      const accessToken = stringField(answer.body, "access_token");
      if (!accessToken) throw new CliError(ExitCode.server, "the identity provider answered without an access_token");
      const tokens: DeviceFlowTokens = { accessToken };
      return {
        ...tokens,
        ...optional("tokenType", stringField(answer.body, "token_type")),
        ...optional("idToken", stringField(answer.body, "id_token")),
        ...optional("refreshToken", stringField(answer.body, "refresh_token")),
        ...optional("expiresIn", numberField(answer.body, "expires_in")),
      };
    }
    if (answer.status >= 500) {
      intervalSeconds = Math.min(intervalSeconds * 2, MAX_INTERVAL_SECONDS);
      continue;
    }
    switch (stringField(answer.body, "error")) {
      case "authorization_pending":
        continue;
      case "slow_down":
        intervalSeconds += SLOW_DOWN_SECONDS;
        continue;
      case "access_denied":
        throw new CliError(ExitCode.auth, "the login was denied");
      case "expired_token":
        throw new CliError(ExitCode.auth, "the login code expired before it was approved", undefined, "run `dvid login` again");
      default:
        throw oauthFailure("the identity provider refused the token request", answer.status, answer.body);
    }
  }
}

function oauthFailure(what: string, status: number, body: Record<string, unknown>): CliError {
  const error = stringField(body, "error");
  const description = stringField(body, "error_description");
  const reason = [error, description].filter(Boolean).join(": ") || `HTTP ${status}`;
  const exitCode = status >= 500 ? ExitCode.server : status === 400 || status === 401 || status === 403 ? ExitCode.auth : ExitCode.server;
  return new CliError(exitCode, `${what}: ${reason}`);
}

function stringField(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function numberField(body: Record<string, unknown>, key: string): number | undefined {
  const value = body[key];
  const n = typeof value === "string" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) && n >= 0 ? n : undefined;
}

function optional<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}
