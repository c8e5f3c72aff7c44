import type { ExpectedVersion } from "./port.ts";

/** The stream was not at the version the writer expected. Nothing was written. */
export class ConcurrencyError extends Error {
  override readonly name = "ConcurrencyError";
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedVersion,
    /** The stream's version when checked, or "no_stream". */
    readonly actual: number | "no_stream",
  ) {
    super(`stream ${streamId}: expected version ${String(expected)}, actual ${String(actual)}`);
  }
}

/**
 * Some but not all of an append's event ids exist already, or they exist in
 * another stream: not a retry of the same append, so refused.
 */
export class IdempotencyError extends Error {
  override readonly name = "IdempotencyError";
  constructor(
    readonly streamId: string,
    readonly eventIds: readonly string[],
  ) {
    super(`stream ${streamId}: event ids already used by a different append: ${eventIds.join(", ")}`);
  }
}
