import type { FastifyReply } from "fastify";
import { z } from "zod";
import type { LogPosition } from "../../adapters/eventstore/port.ts";
import { formatPosition, parsePosition } from "../../adapters/eventstore/position.ts";
import { ProjectionWaitTimeoutError, type ProjectionRunner } from "../../projections/index.ts";
import { ApiProblem } from "../problem.ts";

/**
 * Read-your-writes without sleeping:
 * - a write answers `X-Dv-Position: <txid.gp>`, the log position of what it
 *   appended, after waiting (bounded) until the read model has applied it, so
 *   the resource in the response is what the read model now shows;
 * - a read accepts `?minPosition=<txid.gp>` and waits (bounded) until the
 *   read model has applied that position; past the bound it answers 504
 *   `projection_lagging` rather than serve something older than asked for.
 */
export const POSITION_HEADER = "x-dv-position";
export const POSITION_PATTERN = /^\d{1,20}\.\d{1,20}$/;

export const MinPositionQuerySchema = z.object({
  minPosition: z
    .string()
    .regex(POSITION_PATTERN, { message: "must be a log position \"<transactionId>.<globalPosition>\" (from X-Dv-Position)" })
    .optional()
    .describe("Wait until the read model has applied this log position (an X-Dv-Position header value)"),
});

export interface ReadYourWritesOptions {
  /** How long a write waits for its own position before answering 202 (default 5000). */
  readonly writeWaitMs?: number;
  /** How long a read waits for ?minPosition before answering 504 (default 5000). */
  readonly readWaitMs?: number;
}

export class ReadYourWrites {
  readonly writeWaitMs: number;
  readonly readWaitMs: number;

  constructor(
    private readonly runner: ProjectionRunner,
    private readonly projection: string,
    options: ReadYourWritesOptions = {},
  ) {
    this.writeWaitMs = options.writeWaitMs ?? 5_000;
    this.readWaitMs = options.readWaitMs ?? 5_000;
  }

  /**
   * After a write: sets X-Dv-Position and waits for the read model.
   * Returns false when the bound passed (the write is durable; the caller answers 202).
   */
  async afterWrite(reply: FastifyReply, position: LogPosition | null): Promise<boolean> {
    if (position === null) return true;
    reply.header(POSITION_HEADER, formatPosition(position));
    try {
      await this.runner.waitForPosition(this.projection, position, this.writeWaitMs);
      return true;
    } catch (error) {
      if (error instanceof ProjectionWaitTimeoutError) return false;
      throw error;
    }
  }

  /** Before a read: waits for ?minPosition, or throws a 504 problem. */
  async beforeRead(minPosition: string | undefined): Promise<void> {
    if (minPosition === undefined) return;
    let position: LogPosition;
    try {
      position = parsePosition(minPosition);
    } catch {
      throw new ApiProblem("invalid_position", `minPosition ${JSON.stringify(minPosition)} is not a log position`, {
        errors: [{ path: "minPosition", message: "not a log position", in: "query" }],
      });
    }
    try {
      await this.runner.waitForPosition(this.projection, position, this.readWaitMs);
    } catch (error) {
      if (error instanceof ProjectionWaitTimeoutError) {
        throw new ApiProblem(
          "projection_lagging",
          `the ${this.projection} read model did not reach ${minPosition} within ${this.readWaitMs} ms; retry later`,
          { details: { projection: this.projection, minPosition, reached: error.reached[this.projection] ?? null }, headers: { "retry-after": "1" } },
        );
      }
      throw error;
    }
  }
}
