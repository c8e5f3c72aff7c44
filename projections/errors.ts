import { formatPosition } from "../adapters/eventstore/position.ts";
import type { LogPosition } from "../adapters/eventstore/port.ts";

/**
 * The stored checkpoint was not the one this writer read: another runner (or a
 * rebuild's swap) moved it. The batch was rolled back; reload and go on.
 */
export class CheckpointMovedError extends Error {
  override readonly name = "CheckpointMovedError";
  constructor(
    readonly projection: string,
    readonly expected: LogPosition,
    readonly actual: LogPosition | undefined,
  ) {
    super(
      `projection ${projection}: checkpoint moved (expected ${formatPosition(expected)}, ` +
        `found ${actual ? formatPosition(actual) : "none"}); batch rolled back`,
    );
  }
}

/** waitForPosition gave up: the projection(s) had not applied the position in time. */
export class ProjectionWaitTimeoutError extends Error {
  override readonly name = "ProjectionWaitTimeoutError";
  constructor(
    readonly projections: readonly string[],
    readonly position: LogPosition,
    readonly timeoutMs: number,
    /** Where each projection that had not arrived stood when the wait ended. */
    readonly reached: Readonly<Record<string, string | null>>,
  ) {
    super(
      `projection(s) ${projections.join(", ")} did not reach ${formatPosition(position)} within ${timeoutMs} ms ` +
        `(at ${Object.entries(reached).map(([name, at]) => `${name}=${at ?? "none"}`).join(", ")})`,
    );
  }
}

export class UnknownProjectionError extends Error {
  override readonly name = "UnknownProjectionError";
  constructor(readonly projection: string) {
    super(`no projection named ${JSON.stringify(projection)} is registered with this runner`);
  }
}

/** Another process (or this one) is rebuilding the projection already. */
export class RebuildInProgressError extends Error {
  override readonly name = "RebuildInProgressError";
  constructor(readonly projection: string) {
    super(`projection ${projection} is being rebuilt already`);
  }
}

/** A rebuild asked to require equality found the rebuilt model different from the served one; nothing was swapped. */
export class ChecksumMismatchError extends Error {
  override readonly name = "ChecksumMismatchError";
  constructor(
    readonly projection: string,
    readonly position: string,
    readonly liveDigest: string,
    readonly rebuildDigest: string,
  ) {
    super(`projection ${projection}: rebuilt model differs from the served one at ${position} (live ${liveDigest}, rebuild ${rebuildDigest})`);
  }
}

/** The projection has no checkpoint row: ensureProjectionSchemas (npm run migrate, runner.setup) did not run. */
export class ProjectionNotSetUpError extends Error {
  override readonly name = "ProjectionNotSetUpError";
  constructor(readonly projection: string) {
    super(`projection ${projection} is not set up (run \`npm run migrate\` or ProjectionRunner.setup())`);
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
