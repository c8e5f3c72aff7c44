import {
  BmcAuthError,
  BmcCommandError,
  BmcUnreachableError,
  BmcUnsupportedError,
  bmcTarget,
  summarize,
  type BmcDriver,
  type BmcDriverOptions,
  type BmcEndpoint,
  type BmcError,
  type BmcExchange,
  type BmcOperation,
  type BmcOutcome,
  type BootDevice,
  type BootDeviceOptions,
  type PowerState,
} from "./port.ts";
import { bmcSessions, sessionKey } from "./serial.ts";

/**
 * Redfish (DMTF DSP0266) over fetch, against the first member of
 * `/redfish/v1/Systems`.
 *
 * - Power: `POST {system}/Actions/ComputerSystem.Reset {"ResetType": …}`
 *   (On, ForceOff, GracefulShutdown, PowerCycle, ForceRestart), to the target
 *   the system names; a ResetType outside the advertised
 *   `ResetType@Redfish.AllowableValues` is BmcUnsupportedError, not a guess
 *   at a substitute.
 * - Boot: `PATCH {system} {"Boot": {"BootSourceOverrideTarget": "Pxe"|"Hdd",
 *   "BootSourceOverrideEnabled": "Once"}}` (with If-Match when the system sent
 *   an ETag), then read back; an override that did not take is
 *   BmcUnsupportedError.
 * - Identify: `LocationIndicatorActive` (Redfish 2020.3+) or else the
 *   deprecated `IndicatorLED` (Blinking/Off). Redfish has no identify
 *   duration: any `seconds > 0` turns it on until `identify(0)`.
 * - Basic authentication on every request (no Redfish session to leak or
 *   expire); 401/403 are BmcAuthError. Every request has its own
 *   `AbortSignal.timeout`; no answer in time, a refused connection or a DNS
 *   failure is BmcUnreachableError.
 * - https by default; BMCs with self-signed certificates need their CA in
 *   `NODE_EXTRA_CA_CERTS` (certificate checks are never switched off here).
 */
export interface RedfishDriverOptions extends BmcDriverOptions {
  /** For tests and proxies; the global fetch by default. */
  readonly fetch?: typeof fetch;
}

const DEFAULT_TIMEOUT_MS = 10_000;

const RESET_TYPE = {
  powerOn: "On",
  powerOff: "ForceOff",
  softOff: "GracefulShutdown",
  powerCycle: "PowerCycle",
  powerReset: "ForceRestart",
} as const satisfies Partial<Record<BmcOperation, string>>;

const BOOT_TARGET: Record<BootDevice, string> = { pxe: "Pxe", disk: "Hdd" };

/** Redfish PowerState -> the port's two states. Transitions count as on: the system still draws power. */
const POWER_STATE: Record<string, PowerState> = { On: "on", PoweringOn: "on", PoweringOff: "on", Paused: "on", Off: "off" };

type Json = Record<string, unknown>;

interface SystemView {
  readonly path: string;
  readonly body: Json;
  readonly etag: string | null;
}

export class RedfishDriver implements BmcDriver {
  readonly kind = "redfish" as const;
  readonly description: string;
  readonly #password: string;
  readonly #authorization: string;
  readonly #target: string;
  readonly #key: string;
  readonly #origin: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #options: RedfishDriverOptions;
  #systemPath: string | null = null;

  constructor(endpoint: BmcEndpoint, options: RedfishDriverOptions = {}) {
    if (endpoint.driver !== "redfish") throw new TypeError(`RedfishDriver needs a redfish endpoint, got ${endpoint.driver}`);
    this.#password = endpoint.password;
    this.#authorization = `Basic ${Buffer.from(`${endpoint.username}:${endpoint.password}`).toString("base64")}`;
    this.#target = bmcTarget(endpoint);
    this.#key = sessionKey("redfish", this.#target);
    this.#origin = `${endpoint.scheme ?? "https"}://${this.#target}`;
    this.description = `redfish://${endpoint.username}@${this.#target}`;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#fetch = options.fetch ?? fetch;
    this.#options = options;
  }

  powerStatus(): Promise<PowerState> {
    return this.#locked(async () => {
      const system = await this.#system("powerStatus");
      const state = system.body.PowerState;
      const mapped = typeof state === "string" ? POWER_STATE[state] : undefined;
      if (!mapped) throw this.#error("failed", "powerStatus", `unknown PowerState ${JSON.stringify(state)}`, null);
      return mapped;
    });
  }

  powerOn(): Promise<void> {
    return this.#reset("powerOn");
  }

  powerOff(): Promise<void> {
    return this.#reset("powerOff");
  }

  softOff(): Promise<void> {
    return this.#reset("softOff");
  }

  powerCycle(): Promise<void> {
    return this.#reset("powerCycle");
  }

  powerReset(): Promise<void> {
    return this.#reset("powerReset");
  }

  setBootDevice(device: BootDevice, options: BootDeviceOptions = {}): Promise<void> {
    if (options.persistent) return Promise.reject(new RangeError("only one-time boot device overrides are supported"));
    const target = BOOT_TARGET[device];
    if (!target) return Promise.reject(new RangeError(`unknown boot device ${String(device)}`));
    return this.#locked(async () => {
      const operation = "setBootDevice";
      const system = await this.#system(operation);
      const boot = asObject(system.body.Boot);
      const allowed = boot["BootSourceOverrideTarget@Redfish.AllowableValues"];
      if (Array.isArray(allowed) && !allowed.includes(target)) {
        throw this.#error("unsupported", operation, `BootSourceOverrideTarget ${target} is not among ${JSON.stringify(allowed)}`, null);
      }
      await this.#request(operation, "PATCH", system.path, { Boot: { BootSourceOverrideTarget: target, BootSourceOverrideEnabled: "Once" } }, system.etag);
      const after = asObject((await this.#request(operation, "GET", system.path)).body.Boot);
      if (after.BootSourceOverrideTarget !== target || after.BootSourceOverrideEnabled !== "Once") {
        throw this.#error(
          "unsupported",
          operation,
          `the BMC accepted the boot override ${target}/Once but reports ${String(after.BootSourceOverrideTarget)}/${String(after.BootSourceOverrideEnabled)}`,
          null,
        );
      }
    });
  }

  identify(seconds: number): Promise<void> {
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > 255) {
      return Promise.reject(new RangeError(`identify takes 0..255 seconds, got ${seconds}`));
    }
    return this.#locked(async () => {
      const system = await this.#system("identify");
      const on = seconds > 0;
      let patch: Json;
      if ("LocationIndicatorActive" in system.body) patch = { LocationIndicatorActive: on };
      else if ("IndicatorLED" in system.body) patch = { IndicatorLED: on ? "Blinking" : "Off" };
      else throw this.#error("unsupported", "identify", "the system has neither LocationIndicatorActive nor IndicatorLED", null);
      await this.#request("identify", "PATCH", system.path, patch, system.etag);
    });
  }

  #reset(operation: keyof typeof RESET_TYPE): Promise<void> {
    const resetType = RESET_TYPE[operation];
    return this.#locked(async () => {
      const system = await this.#system(operation);
      const action = asObject(asObject(system.body.Actions)["#ComputerSystem.Reset"]);
      const allowed = action["ResetType@Redfish.AllowableValues"];
      if (Array.isArray(allowed) && !allowed.includes(resetType)) {
        throw this.#error("unsupported", operation, `ResetType ${resetType} is not among ${JSON.stringify(allowed)}`, null);
      }
      const target = typeof action.target === "string" ? action.target : `${system.path}/Actions/ComputerSystem.Reset`;
      await this.#request(operation, "POST", target, { ResetType: resetType });
    });
  }

  #locked<T>(work: () => Promise<T>): Promise<T> {
    return (this.#options.sessions ?? bmcSessions).run(this.#key, work);
  }

  /** The first ComputerSystem (its path found once, its body read every time). */
  async #system(operation: BmcOperation): Promise<SystemView> {
    if (this.#systemPath === null) {
      const collection = await this.#request(operation, "GET", "/redfish/v1/Systems");
      const members = collection.body.Members;
      const first = Array.isArray(members) ? asObject(members[0])["@odata.id"] : undefined;
      if (typeof first !== "string") throw this.#error("failed", operation, "/redfish/v1/Systems lists no ComputerSystem", null);
      this.#systemPath = first;
    }
    const answer = await this.#request(operation, "GET", this.#systemPath);
    return { path: this.#systemPath, body: answer.body, etag: answer.etag };
  }

  /** One HTTP request, recorded as an exchange; the caller holds the lock. */
  async #request(operation: BmcOperation, method: string, path: string, body?: Json, ifMatch?: string | null): Promise<{ body: Json; etag: string | null }> {
    const url = new URL(path, this.#origin).toString();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const command = payload === undefined ? [method, url] : [method, url, payload];
    const headers: Record<string, string> = { authorization: this.#authorization, accept: "application/json" };
    if (payload !== undefined) headers["content-type"] = "application/json";
    if (ifMatch) headers["if-match"] = ifMatch;

    const startedAt = new Date();
    let status: number | null = null;
    let failure: { kind: Exclude<BmcOutcome, "ok">; message: string } | null = null;
    let parsed: Json = {};
    let etag: string | null = null;
    try {
      const response = await this.#fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(this.#timeoutMs), redirect: "error" });
      status = response.status;
      etag = response.headers.get("etag");
      const text = await response.text();
      if (response.ok) {
        parsed = text.trim() ? asObject(JSON.parse(text)) : {};
      } else {
        failure = { kind: classifyHttpFailure(response.status, text), message: `HTTP ${response.status}: ${redfishMessage(text)}` };
      }
    } catch (error) {
      failure = describeFetchFailure(error, this.#timeoutMs);
    }

    const exchange: BmcExchange = {
      operation,
      driver: "redfish",
      target: this.#target,
      command,
      startedAt: startedAt.toISOString(),
      durationMs: Date.now() - startedAt.getTime(),
      exitCode: status,
      outcome: failure?.kind ?? "ok",
      stderrSummary: failure ? summarize(failure.message, this.#password) : "",
    };
    this.#options.onExchange?.(exchange);
    if (failure) throw this.#error(failure.kind, operation, `${method} ${path}: ${exchange.stderrSummary}`, exchange);
    return { body: parsed, etag };
  }

  #error(kind: Exclude<BmcOutcome, "ok">, operation: BmcOperation, why: string, exchange: BmcExchange | null): BmcError {
    const message = summarize(`${this.description} ${operation}: ${why}`, this.#password, 1000);
    switch (kind) {
      case "auth_failed":
        return new BmcAuthError(message, operation, this.#target, exchange);
      case "unreachable":
        return new BmcUnreachableError(message, operation, this.#target, exchange);
      case "unsupported":
        return new BmcUnsupportedError(message, operation, this.#target, exchange);
      default:
        return new BmcCommandError(message, operation, this.#target, exchange);
    }
  }
}

function asObject(value: unknown): Json {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Json) : {};
}

const UNSUPPORTED_MESSAGES = /ActionNotSupported|ActionParameterNotSupported|ActionParameterValueNotInList|PropertyNotWritable|PropertyValueNotInList|PropertyUnknown|OperationNotAllowed/;

function classifyHttpFailure(status: number, body: string): Exclude<BmcOutcome, "ok"> {
  if (status === 401 || status === 403) return "auth_failed";
  if (status === 404 || status === 405 || status === 501) return "unsupported";
  if (status === 400 && UNSUPPORTED_MESSAGES.test(body)) return "unsupported";
  if (status === 503 || status === 504) return "unreachable";
  return "failed";
}

/** The Redfish error's message and its extended info, or the start of a non-JSON body. */
function redfishMessage(text: string): string {
  try {
    const error = asObject(asObject(JSON.parse(text)).error);
    const extended = Array.isArray(error["@Message.ExtendedInfo"]) ? error["@Message.ExtendedInfo"] : [];
    const parts = [error.message, ...extended.map((m) => asObject(m).Message ?? asObject(m).MessageId)].filter((p): p is string => typeof p === "string");
    if (parts.length > 0) return parts.join("; ");
  } catch {
    // not JSON
  }
  return text.slice(0, 200) || "(empty body)";
}

function describeFetchFailure(error: unknown, timeoutMs: number): { kind: Exclude<BmcOutcome, "ok">; message: string } {
  const name = (error as Error | undefined)?.name;
  if (name === "TimeoutError" || name === "AbortError") return { kind: "unreachable", message: `no answer within ${timeoutMs} ms` };
  if (error instanceof SyntaxError) return { kind: "failed", message: `answer is not JSON: ${error.message}` };
  // fetch's network errors are TypeError("fetch failed") with the system error as cause.
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === "string" ? cause.code : undefined;
  if (error instanceof TypeError) {
    const detail = code ?? (typeof cause?.message === "string" ? cause.message : error.message);
    if (code && /^(CERT_|ERR_TLS|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO_VERIFY)/.test(code)) return { kind: "failed", message: `TLS: ${detail}` };
    return { kind: "unreachable", message: `no connection: ${detail}` };
  }
  return { kind: "failed", message: String((error as Error | undefined)?.message ?? error) };
}
