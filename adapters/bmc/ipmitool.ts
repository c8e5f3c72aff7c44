import { execFile } from "node:child_process";
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
 * IPMI 2.0 (RMCP+, `-I lanplus`) through the ipmitool binary.
 *
 * - execFile, never a shell; the password goes to ipmitool in its environment
 *   (`-E` reads `IPMI_PASSWORD`), so it is in no argv, exchange or log.
 * - The cipher suite is always explicit (`-C`, default 3): without it ipmitool
 *   first asks for Get Channel Cipher Suites, which some BMCs (ipmi_sim among
 *   them) do not implement, and every call then takes ~10 s.
 * - `-N 1 -R <retries>` (1 s per try, 1 retry by default): a dead BMC fails
 *   in about 2 s instead of ~20 s. Tasks retry at their own level.
 * - `-v`: only the verbose output says *why* a session failed (RAKP 2 HMAC
 *   invalid = wrong password; no Get Auth Capabilities answer = unreachable);
 *   the plain output prints the same line for both. The verbose noise lines
 *   are dropped from the summaries.
 * - ipmitool exits 0 for some refusals (`chassis bootdev` on a BMC that does
 *   not take boot parameters), so every answer is parsed, and the boot device
 *   is read back with `chassis bootparam get 5` before it is trusted.
 */
export interface IpmitoolDriverOptions extends BmcDriverOptions {
  /** ipmitool `-R`: retries per IPMI request (default 1). */
  readonly retries?: number;
  /** The ipmitool binary (default `ipmitool`, looked up in PATH). */
  readonly binary?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_CIPHER_SUITE = 3;
const DEFAULT_RETRIES = 1;

export class IpmitoolDriver implements BmcDriver {
  readonly kind = "ipmi" as const;
  readonly description: string;
  readonly #password: string;
  readonly #target: string;
  readonly #key: string;
  readonly #baseArgs: readonly string[];
  readonly #binary: string;
  readonly #timeoutMs: number;
  readonly #options: IpmitoolDriverOptions;

  constructor(endpoint: BmcEndpoint, options: IpmitoolDriverOptions = {}) {
    if (endpoint.driver !== "ipmi") throw new TypeError(`IpmitoolDriver needs an ipmi endpoint, got ${endpoint.driver}`);
    const cipher = endpoint.cipherSuite ?? DEFAULT_CIPHER_SUITE;
    const retries = options.retries ?? DEFAULT_RETRIES;
    if (!Number.isInteger(cipher) || cipher < 0 || cipher > 255) throw new RangeError(`cipher suite ${cipher} is not 0..255`);
    if (!Number.isInteger(retries) || retries < 0) throw new RangeError(`retries ${retries} is not a whole number >= 0`);
    this.#password = endpoint.password;
    this.#target = bmcTarget(endpoint);
    this.#key = sessionKey("ipmi", this.#target);
    this.description = `ipmi://${endpoint.username}@${this.#target}`;
    this.#binary = options.binary ?? "ipmitool";
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#options = options;
    this.#baseArgs = [
      "-I", "lanplus",
      "-C", String(cipher),
      "-N", "1",
      "-R", String(retries),
      "-H", endpoint.address,
      "-p", String(endpoint.port),
      "-U", endpoint.username,
      "-E",
      "-v",
    ];
  }

  async powerStatus(): Promise<PowerState> {
    return this.#call("powerStatus", ["chassis", "power", "status"], ({ stdout }) => {
      const m = /Chassis Power is (on|off)/i.exec(stdout);
      if (!m?.[1]) throw refusal("failed", `unexpected answer to power status: ${oneLine(stdout)}`);
      return m[1].toLowerCase() as PowerState;
    });
  }

  powerOn(): Promise<void> {
    return this.#power("powerOn", "on", "Up/On");
  }

  powerOff(): Promise<void> {
    return this.#power("powerOff", "off", "Down/Off");
  }

  softOff(): Promise<void> {
    return this.#power("softOff", "soft", "Soft");
  }

  powerCycle(): Promise<void> {
    return this.#power("powerCycle", "cycle", "Cycle");
  }

  powerReset(): Promise<void> {
    return this.#power("powerReset", "reset", "Reset");
  }

  async setBootDevice(device: BootDevice, options: BootDeviceOptions = {}): Promise<void> {
    if (options.persistent) throw new RangeError("only one-time boot device overrides are supported");
    const expected = BOOT_SELECTOR[device];
    if (!expected) throw new RangeError(`unknown boot device ${String(device)}`);
    // Both exchanges under one hold of the lock: nothing else reaches this BMC between the write and its check.
    await this.#locked(async () => {
      await this.#exchange("setBootDevice", ["chassis", "bootdev", device], ({ stdout, stderr }) => {
        refuseIfFailed(stdout, stderr);
        if (!new RegExp(`Set Boot Device to ${device}`, "i").test(stdout)) {
          throw refusal("failed", `unexpected answer to bootdev ${device}: ${oneLine(stdout)}`);
        }
      });
      // ipmitool exits 0 even when the BMC refused the parameter: read it back.
      await this.#exchange("setBootDevice", ["chassis", "bootparam", "get", "5"], ({ stdout, stderr }) => {
        refuseIfFailed(stdout, stderr);
        const selector = /Boot Device Selector\s*:\s*(.+)/i.exec(stdout)?.[1]?.trim();
        if (selector === undefined) throw refusal("failed", `boot flags unreadable: ${oneLine(stdout)}`);
        if (!expected.test(selector)) {
          throw refusal("unsupported", `the BMC accepted bootdev ${device} but its boot flags say "${selector}"`);
        }
      });
    });
  }

  async identify(seconds: number): Promise<void> {
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > 255) {
      throw new RangeError(`identify takes 0..255 seconds, got ${seconds}`);
    }
    await this.#call("identify", ["chassis", "identify", String(seconds)], ({ stdout, stderr }) => {
      refuseIfFailed(stdout, stderr);
      if (!/Chassis identify interval/i.test(stdout)) {
        throw refusal("failed", `unexpected answer to identify: ${oneLine(stdout)}`);
      }
    });
  }

  async #power(operation: BmcOperation, verb: string, answer: string): Promise<void> {
    await this.#call(operation, ["chassis", "power", verb], ({ stdout, stderr }) => {
      refuseIfFailed(stdout, stderr);
      if (!stdout.includes(`Chassis Power Control: ${answer}`)) {
        throw refusal("failed", `unexpected answer to power ${verb}: ${oneLine(stdout)}`);
      }
    });
  }

  /** One ipmitool run under this BMC's session lock. */
  #call<T>(operation: BmcOperation, args: readonly string[], interpret: (answer: { stdout: string; stderr: string }) => T): Promise<T> {
    return this.#locked(() => this.#exchange(operation, args, interpret));
  }

  #locked<T>(work: () => Promise<T>): Promise<T> {
    return (this.#options.sessions ?? bmcSessions).run(this.#key, work);
  }

  /** One ipmitool run, recorded as an exchange; the caller holds the lock. */
  async #exchange<T>(operation: BmcOperation, args: readonly string[], interpret: (answer: { stdout: string; stderr: string }) => T): Promise<T> {
    const command = [...this.#baseArgs, ...args];
    const startedAt = new Date();
    const raw = await runIpmitool(this.#binary, command, this.#password, this.#timeoutMs);
    const durationMs = Date.now() - startedAt.getTime();
    const stderr = dropVerboseNoise(raw.stderr);

    let value: T | undefined;
    let failure: Refusal | null = null;
    if (raw.spawnError !== null) {
      failure = refusal("failed", `cannot run ${this.#binary}: ${raw.spawnError}`);
    } else if (raw.timedOut) {
      failure = refusal("unreachable", `no answer within ${this.#timeoutMs} ms`);
    } else if (raw.exitCode !== 0) {
      failure = refusal(classifyIpmitoolFailure(stderr), `ipmitool exited with ${raw.exitCode}`);
    } else {
      try {
        value = interpret({ stdout: raw.stdout, stderr });
      } catch (error) {
        if (!(error instanceof Refusal)) throw error;
        failure = error;
      }
    }

    const exchange: BmcExchange = {
      operation,
      driver: "ipmi",
      target: this.#target,
      command,
      startedAt: startedAt.toISOString(),
      durationMs,
      exitCode: raw.exitCode,
      outcome: failure?.kind ?? "ok",
      stderrSummary: summarize(failure && !stderr.trim() ? failure.message : stderr, this.#password),
    };
    this.#options.onExchange?.(exchange);
    if (failure) throw this.#error(failure, operation, exchange);
    return value as T;
  }

  #error(failure: Refusal, operation: BmcOperation, exchange: BmcExchange): BmcError {
    const detail = exchange.stderrSummary;
    const what = summarize(failure.message, this.#password);
    const why = !detail || detail.includes(what) ? detail || what : `${what}: ${detail}`;
    const message = summarize(`${this.description} ${operation}: ${why}`, this.#password, 1000);
    switch (failure.kind) {
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

const BOOT_SELECTOR: Record<BootDevice, RegExp> = {
  pxe: /^Force PXE\b/i,
  disk: /^Force Boot from default Hard-Drive\b/i,
};

type FailureKind = Exclude<BmcOutcome, "ok">;

class Refusal extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
  }
}

function refusal(kind: FailureKind, message: string): Refusal {
  return new Refusal(kind, message);
}

/** ipmitool prints "... failed: <completion code>" and may still exit 0. */
function refuseIfFailed(stdout: string, stderr: string): void {
  const text = `${stderr}\n${stdout}`;
  const line = text.split("\n").find((l) => /\bfailed\b|Invalid completion code|Error:/i.test(l));
  if (line === undefined) return;
  throw refusal(classifyIpmitoolFailure(line), line.trim());
}

function oneLine(text: string): string {
  return summarize(text, "", 200) || "(nothing)";
}

const AUTH_FAILURE = [
  /RAKP \d+ HMAC is invalid/i,
  /RAKP \d+ message indicates an error/i,
  /unauthorized name/i,
  /invalid (authentication|integrity|confidentiality) algorithm/i,
  /Activate Session error/i,
  /Unable to read password/i,
  /Authentication type .* not supported/i,
];
const UNREACHABLE = [
  /Get Auth Capabilities error/i,
  /Get Channel Authentication Capabilities/i,
  /No response from remote controller/i,
  /insufficient resources for session/i,
  /timed? ?out/i,
];
const UNSUPPORTED = [/Invalid data field/i, /Invalid command/i, /not supported/i, /Unknown command/i];

/**
 * What a failed ipmitool run means, from its (verbose) stderr. Authentication
 * is checked first: "Unable to establish IPMI v2 / RMCP+ session" is printed
 * for a wrong password and for a dead BMC alike, and only the lines before it
 * tell them apart; alone, it means nobody answered.
 */
export function classifyIpmitoolFailure(stderr: string): FailureKind {
  if (AUTH_FAILURE.some((re) => re.test(stderr))) return "auth_failed";
  if (UNREACHABLE.some((re) => re.test(stderr))) return "unreachable";
  if (UNSUPPORTED.some((re) => re.test(stderr))) return "unsupported";
  if (/Unable to establish IPMI v2 \/ RMCP\+ session/i.test(stderr)) return "unreachable";
  return "failed";
}

/** Drops what `-v` adds to every run (PEN registry, VSO capability probe). */
export function dropVerboseNoise(stderr: string): string {
  const out: string[] = [];
  let afterVsoProbe = false;
  for (const line of stderr.split(/\r?\n/)) {
    const probe = /^Running Get VSO Capabilities/.test(line);
    const noise =
      probe ||
      /^Loading IANA PEN Registry/.test(line) ||
      /^Discovered IPMB address/.test(line) ||
      (afterVsoProbe && /^Invalid completion code received: Invalid command/.test(line));
    afterVsoProbe = probe;
    if (!noise) out.push(line);
  }
  return out.join("\n");
}

interface RawRun {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  timedOut: boolean;
  spawnError: string | null;
}

function runIpmitool(binary: string, argv: readonly string[], password: string, timeoutMs: number): Promise<RawRun> {
  return new Promise((resolve) => {
    const child = execFile(
      binary,
      argv,
      {
        // Only what ipmitool needs; the password is read by `-E`.
        env: { IPMI_PASSWORD: password, PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" },
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 1024 * 1024,
        encoding: "utf8",
      },
      (error, stdout, stderr) => {
        if (!error) return resolve({ stdout, stderr, exitCode: 0, timedOut: false, spawnError: null });
        const code = (error as NodeJS.ErrnoException & { code?: unknown }).code;
        if (typeof code === "string") return resolve({ stdout, stderr, exitCode: null, timedOut: false, spawnError: code });
        const timedOut = error.killed === true;
        resolve({ stdout, stderr, exitCode: typeof code === "number" ? code : null, timedOut, spawnError: null });
      },
    );
    // ipmitool falls back to prompting on stdin if the environment has no password.
    child.stdin?.end();
  });
}
