/**
 * The BMC port: what Maskin's workers may ask of a server's baseboard
 * management controller, whatever protocol the BMC speaks. Two adapters
 * implement it: `ipmitool.ts` (IPMI 2.0 lanplus through the ipmitool binary)
 * and `redfish.ts` (Redfish over HTTPS). Sagas import this file only.
 *
 * Every exchange with a BMC is reported as a `BmcExchange` (what was sent,
 * how long it took, how it ended), so a task can say *why* a step failed.
 * The password never appears in an exchange, an error or a log line: it is
 * held in memory by the driver and handed to ipmitool through its environment
 * (`-E` + `IPMI_PASSWORD`) or to the Redfish service in an Authorization header.
 */

export type BmcDriverKind = "ipmi" | "redfish";
export type PowerState = "on" | "off";
export type BootDevice = "pxe" | "disk";

/** How to reach one BMC. `password` is the decrypted secret: pass it in memory only. */
export interface BmcEndpoint {
  readonly driver: BmcDriverKind;
  readonly address: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
  /** IPMI only: the RMCP+ cipher suite (`ipmitool -C`); 3 (HMAC-SHA1, AES-128) when absent. */
  readonly cipherSuite?: number;
  /** Redfish only: `https` (default) or `http` (lab peers). */
  readonly scheme?: "https" | "http";
}

export type BmcOperation =
  | "powerStatus"
  | "powerOn"
  | "powerOff"
  | "softOff"
  | "powerCycle"
  | "powerReset"
  | "setBootDevice"
  | "identify";

export type BmcOutcome = "ok" | "auth_failed" | "unreachable" | "unsupported" | "failed";

/**
 * One request/answer with a BMC. An operation may take more than one
 * (setting the boot device is a write and a verifying read).
 */
export interface BmcExchange {
  readonly operation: BmcOperation;
  readonly driver: BmcDriverKind;
  /** `address:port` of the BMC. */
  readonly target: string;
  /** ipmitool's argv (the password is not in it), or `[METHOD, url, body?]` for Redfish. */
  readonly command: readonly string[];
  /** Wall-clock start, ISO 8601. */
  readonly startedAt: string;
  readonly durationMs: number;
  /** ipmitool's exit code or the HTTP status; null when there was no answer (killed, refused, timed out). */
  readonly exitCode: number | null;
  readonly outcome: BmcOutcome;
  /** What went wrong, in one line, at most 500 characters; empty when nothing did. */
  readonly stderrSummary: string;
}

export type BmcExchangeListener = (exchange: BmcExchange) => void;

export interface BootDeviceOptions {
  /** One-time override only (the next boot); persistent overrides are not offered. */
  readonly persistent?: false;
}

export interface BmcDriver {
  readonly kind: BmcDriverKind;
  /** `ipmi://user@address:port`: safe to log. */
  readonly description: string;
  powerStatus(): Promise<PowerState>;
  powerOn(): Promise<void>;
  /** Hard off. */
  powerOff(): Promise<void>;
  /** Ask the OS to shut down (ACPI power button); returns once the BMC accepted the request. */
  softOff(): Promise<void>;
  powerCycle(): Promise<void>;
  powerReset(): Promise<void>;
  /** One-time boot device for the next boot, verified by reading it back. */
  setBootDevice(device: BootDevice, options?: BootDeviceOptions): Promise<void>;
  /** Blink the chassis identify light for `seconds` (0 turns it off). */
  identify(seconds: number): Promise<void>;
}

/** Options every driver takes. */
export interface BmcDriverOptions {
  /** Per exchange: an answer later than this is treated as no answer (BmcUnreachableError). */
  readonly timeoutMs?: number;
  readonly onExchange?: BmcExchangeListener;
  /**
   * Serializes exchanges per BMC. Drivers share one process-wide lock unless
   * given another; every driver talking to the same BMC must share it.
   */
  readonly sessions?: { run<T>(key: string, work: () => Promise<T>): Promise<T> };
}

export type BmcErrorCode = "bmc_auth_failed" | "bmc_unreachable" | "bmc_unsupported" | "bmc_command_failed";

/** Base of the typed BMC errors; `exchange` is the exchange that failed. */
export abstract class BmcError extends Error {
  abstract readonly code: BmcErrorCode;
  /** Whether trying again later can help (an unreachable BMC may come back; a wrong password won't fix itself). */
  abstract readonly retryable: boolean;
  constructor(
    message: string,
    readonly operation: BmcOperation,
    readonly target: string,
    readonly exchange: BmcExchange | null,
  ) {
    super(message);
  }
}

/** The BMC refused the credentials (or the cipher suite) before any command ran. */
export class BmcAuthError extends BmcError {
  override readonly name = "BmcAuthError";
  readonly code = "bmc_auth_failed" as const;
  readonly retryable = false;
}

/** No answer in time: network, a dead BMC, or a BMC too busy to answer. */
export class BmcUnreachableError extends BmcError {
  override readonly name = "BmcUnreachableError";
  readonly code = "bmc_unreachable" as const;
  readonly retryable = true;
}

/** The BMC answered but does not do this (or silently did not apply it). */
export class BmcUnsupportedError extends BmcError {
  override readonly name = "BmcUnsupportedError";
  readonly code = "bmc_unsupported" as const;
  readonly retryable = false;
}

/** Anything else: the BMC answered with an error, or with something we cannot read. */
export class BmcCommandError extends BmcError {
  override readonly name = "BmcCommandError";
  readonly code = "bmc_command_failed" as const;
  readonly retryable = true;
}

export function isBmcError(value: unknown): value is BmcError {
  return value instanceof BmcError;
}

/** `address:port`, with IPv6 addresses bracketed. */
export function bmcTarget(endpoint: Pick<BmcEndpoint, "address" | "port">): string {
  const host = endpoint.address.includes(":") ? `[${endpoint.address}]` : endpoint.address;
  return `${host}:${endpoint.port}`;
}

/** One line, at most `max` characters, with every occurrence of `secret` masked. */
export function summarize(text: string, secret: string, max = 500): string {
  let line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .join("; ");
  if (secret.length > 0) line = line.split(secret).join("***");
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
