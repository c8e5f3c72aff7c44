import { CliError, ExitCode, exitCodeForStatus } from "./errors.ts";
import { parseProblem } from "./problem.ts";

export interface ApiClientOptions {
  readonly apiUrl: string;
  readonly token?: string;
  /** Per request (default 30 s; DV_TIMEOUT in seconds overrides it in the commands). */
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
}

export interface RequestOptions {
  readonly body?: unknown;
  readonly query?: Record<string, string | number | undefined>;
  readonly headers?: Record<string, string>;
  /** Send the token (default true). */
  readonly auth?: boolean;
  /** Body sent as application/x-www-form-urlencoded instead of JSON. */
  readonly form?: Record<string, string>;
  /**
   * Retries after a dropped connection or a 502/503 (default: 2 for GET, PUT
   * and a POST with an Idempotency-Key, which the API replays rather than
   * running twice; 0 otherwise). A refused connection is never retried.
   */
  readonly retries?: number;
}

export interface ApiResponse<T> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * The CLI's only way to the platform: HTTP to the public API with a bearer
 * token, like any user's script. Every failure becomes a CliError with the
 * exit code scripts rely on and the server's problem details.
 */
export class ApiClient {
  readonly apiUrl: string;
  /** The bearer token sent with requests (subscriptions send it too). */
  readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ApiClientOptions) {
    this.apiUrl = options.apiUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.fetchImpl = options.fetch ?? fetch;
  }

  get hasToken(): boolean {
    return Boolean(this.token);
  }

  url(path: string, query?: RequestOptions["query"]): string {
    const url = new URL(path.startsWith("http") ? path : `${this.apiUrl}${path.startsWith("/") ? "" : "/"}${path}`);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { accept: "application/json, application/problem+json", ...options.headers };
    let body: string | undefined;
    if (options.form) {
      headers["content-type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(options.form).toString();
    } else if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    if (options.auth !== false && this.token) headers.authorization = `Bearer ${this.token}`;
    const target = this.url(path, options.query);
    const idempotent = method === "GET" || method === "PUT" || method === "DELETE" || (method === "POST" && Boolean(headers["idempotency-key"]));
    let retries = options.retries ?? (idempotent ? 2 : 0);

    for (let attempt = 1; ; attempt++) {
      let response: Response;
      let parsed: unknown;
      try {
        response = await this.fetchImpl(target, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs), redirect: "follow" });
        parsed = await readBody(response);
      } catch (error) {
        if (retries-- > 0 && isDropped(error)) {
          await pause(attempt);
          continue;
        }
        throw unreachable(this.apiUrl, error, this.timeoutMs);
      }
      if ((response.status === 502 || response.status === 503) && retries-- > 0) {
        await pause(attempt, response.headers.get("retry-after"));
        continue;
      }
      if (!response.ok) throw this.failure(method, target, response, parsed, options.auth !== false);
      return { status: response.status, headers: response.headers, body: parsed as T };
    }
  }

  get<T = unknown>(path: string, options?: RequestOptions) {
    return this.request<T>("GET", path, options).then((r) => r.body);
  }
  post<T = unknown>(path: string, body?: unknown, options?: RequestOptions) {
    return this.request<T>("POST", path, { ...options, body }).then((r) => r.body);
  }
  put<T = unknown>(path: string, body?: unknown, options?: RequestOptions) {
    return this.request<T>("PUT", path, { ...options, body }).then((r) => r.body);
  }
  patch<T = unknown>(path: string, body?: unknown, options?: RequestOptions) {
    return this.request<T>("PATCH", path, { ...options, body }).then((r) => r.body);
  }
  delete<T = unknown>(path: string, options?: RequestOptions) {
    return this.request<T>("DELETE", path, options).then((r) => r.body);
  }

  private failure(method: string, target: string, response: Response, body: unknown, sentAuth: boolean): CliError {
    const problem = parseProblem(response.status, response.statusText, body);
    const exitCode = exitCodeForStatus(response.status);
    let hint: string | undefined;
    if (response.status === 401) {
      hint = sentAuth && this.token ? "the token was refused (expired?): run `dvid login` again" : "not logged in: run `dvid login --api URL ...`";
    } else if (response.status === 404 && (problem.code === "route_not_found" || isRouteMissing(body))) {
      hint = `the server at ${this.apiUrl} has no ${method} ${new URL(target).pathname}: is it an older version?`;
    }
    return new CliError(exitCode, problem.detail ? `${problem.title}: ${problem.detail}` : problem.title, problem, hint);
  }
}

/** Fastify's answer for a route it does not have, as opposed to a resource that does not exist. */
function isRouteMissing(body: unknown): boolean {
  const message = typeof body === "object" && body !== null ? (body as { message?: unknown }).message : undefined;
  return typeof message === "string" && /^Route .* not found$/.test(message);
}

/** The connection went away mid-request (not: nobody listening, not: too slow). */
function isDropped(error: unknown): boolean {
  const code = (error as { cause?: { code?: string } })?.cause?.code;
  return code === "ECONNRESET" || code === "UND_ERR_SOCKET" || code === "EPIPE";
}

function pause(attempt: number, retryAfter?: string | null): Promise<void> {
  const seconds = Number(retryAfter);
  const ms = Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 10) * 1000 : 200 * 2 ** (attempt - 1);
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (text === "") return undefined;
  const type = response.headers.get("content-type") ?? "";
  if (type.includes("json")) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/** Connection refused, DNS, TLS, timeout: exit 5 with what went wrong in words. */
export function unreachable(apiUrl: string, error: unknown, timeoutMs: number): CliError {
  const err = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") {
    return new CliError(ExitCode.server, `no answer from ${apiUrl} within ${Math.round(timeoutMs / 1000)} s`);
  }
  const code = err?.cause?.code;
  const reasons: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ECONNRESET: "connection reset",
    ENOTFOUND: "host not found",
    EAI_AGAIN: "DNS lookup failed",
    EHOSTUNREACH: "host unreachable",
    ENETUNREACH: "network unreachable",
    UND_ERR_CONNECT_TIMEOUT: "connect timed out",
    UND_ERR_SOCKET: "connection closed by the server",
  };
  const reason = (code && reasons[code]) ?? err?.cause?.message ?? err?.message ?? String(error);
  return new CliError(
    ExitCode.server,
    `cannot reach the API at ${apiUrl}: ${reason}`,
    undefined,
    code === "ECONNREFUSED" ? "is the server running? (`dv up` starts one)" : undefined,
  );
}
