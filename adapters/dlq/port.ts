/**
 * The port for reading and replaying dead letters (sagas/README.md, "Poison"):
 * messages that failed `maxDeliver` times and were moved to DV_DLQ with where
 * they came from and why they died. api/ depends on this file only;
 * adapters/nats/dead-letters.ts implements it over NATS JetStream.
 *
 * Subjects here are unqualified (`dv.…`), as in adapters/workers/port.ts.
 */

/** One dead letter, as a list shows it. */
export interface DeadLetterSummary {
  /** Its sequence in DV_DLQ: the id operators use (`dv dlq show 7`). */
  readonly sequence: number;
  /** The subject it died on (`dv.task.evt.step_started`). */
  readonly originalSubject: string;
  /** The stream it was stored in (as the consumer saw it, namespace included) and its sequence there. */
  readonly originalStream: string;
  readonly originalSequence: number | null;
  /** How often it had been delivered when it was given up. */
  readonly deliveryCount: number | null;
  /** The last error's text. */
  readonly error: string;
  /** The task it belongs to, when its body or headers say so. */
  readonly taskId: string | null;
  /** The work request it is (or answers), when known. */
  readonly requestId: string | null;
  readonly eventType: string | null;
  readonly correlationId: string | null;
  readonly deadLetteredAt: Date;
  /** Set once it has been replayed (then it is never published again). */
  readonly replay: DeadLetterReplay | null;
}

/** One dead letter with what it carried. */
export interface DeadLetter extends DeadLetterSummary {
  /** Every header it carries (the original's, minus NATS's own, plus the Dv-* dead-letter headers). */
  readonly headers: Readonly<Record<string, string>>;
  readonly data: Uint8Array;
}

/** Where a replay went. */
export interface DeadLetterReplay {
  readonly replayedAt: Date;
  /** The Nats-Msg-Id it was published with: `<original stream>:<original sequence>:replay:<DLQ sequence>`. */
  readonly messageId: string;
  readonly stream: string;
  /** Its sequence in `stream`. */
  readonly sequence: number;
}

export interface ReplayOutcome {
  readonly deadLetter: DeadLetter;
  readonly replay: DeadLetterReplay;
  /** False when an earlier replay had published it already (nothing was published now). */
  readonly published: boolean;
}

export interface DeadLetters {
  /** Dead letters with a sequence above `after`, oldest first, at most `limit`. */
  list(options: { readonly after?: number; readonly limit: number }): Promise<DeadLetterSummary[]>;
  /** null when DV_DLQ holds no message with this sequence. */
  get(sequence: number): Promise<DeadLetter | null>;
  /**
   * Publishes the message again to its original subject, once per DLQ
   * sequence however often this is called; null when there is no such dead letter.
   */
  replay(sequence: number): Promise<ReplayOutcome | null>;
}

/** The messaging behind the port cannot be reached now (NATS down): try again later. */
export class DeadLettersUnavailableError extends Error {
  override readonly name = "DeadLettersUnavailableError";
}
