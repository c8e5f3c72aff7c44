/**
 * Exit codes of every dv* command. Scripts branch on these, so they are part
 * of the CLI's contract (see cli/README.md) and never change meaning.
 */
export const ExitCode = {
  ok: 0,
  /** Bad invocation or input the server refused as invalid (400/422). */
  usage: 1,
  notFound: 2,
  /** 409, 412: someone else changed it, or it already exists. */
  conflict: 3,
  /** 401, 403, or no token to send. */
  auth: 4,
  /** 5xx, connection refused, DNS failure, timeout: try again later. */
  server: 5,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code for an HTTP error status. */
export function exitCodeForStatus(status: number): ExitCode {
  if (status === 401 || status === 403) return ExitCode.auth;
  if (status === 404 || status === 410) return ExitCode.notFound;
  if (status === 409 || status === 412) return ExitCode.conflict;
  // Rate limited or unavailable: nothing is wrong with the request itself.
  if (status === 429 || status === 408 || status >= 500) return ExitCode.server;
  return ExitCode.usage;
}

/** One failing input field as the server (or the CLI) named it. */
export interface FieldIssue {
  readonly field: string;
  readonly message: string;
}

/** RFC 9457 problem details, with the failing fields normalised. */
export interface Problem {
  readonly type?: string;
  readonly title: string;
  readonly status?: number;
  readonly detail?: string;
  readonly instance?: string;
  /** The API's stable error code (the last segment of `type`). */
  readonly code?: string;
  /** Quote it when reporting a server error; the server logged it. */
  readonly correlationId?: string;
  readonly fields: readonly FieldIssue[];
}

/** An error the CLI reports as a message and an exit code, never as a stack trace. */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly problem?: Problem,
    /** A next step for the user, printed after the message. */
    readonly hint?: string,
  ) {
    super(message);
  }
}

export function usageError(message: string, hint?: string): CliError {
  return new CliError(ExitCode.usage, message, undefined, hint);
}

/** Commander's own errors (unknown option, missing argument) and ours, as exit codes. */
export function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof CliError) return error.exitCode;
  return ExitCode.server;
}
