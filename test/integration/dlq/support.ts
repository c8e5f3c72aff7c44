import type { DeadLetter, DeadLetterReplay, DeadLetters, ReplayOutcome } from "../../../adapters/dlq/port.ts";

/**
 * An in-memory DeadLetters (adapters/dlq/port.ts) for API tests that are not
 * about NATS (the authorization matrix): the NATS adapter is tested in
 * dlq.test.ts against a real server.
 */
export function fakeDeadLetters(sequences: readonly number[]): DeadLetters & { readonly published: number[] } {
  const replays = new Map<number, DeadLetterReplay>();
  const published: number[] = [];
  const letter = (sequence: number): DeadLetter => ({
    sequence,
    originalSubject: "dv.ledger.cmd.record.dc1",
    originalStream: "DV_WORK",
    originalSequence: sequence,
    deliveryCount: 5,
    error: "boom",
    taskId: "t-1",
    requestId: "t-1:one:1",
    eventType: null,
    correlationId: null,
    deadLetteredAt: new Date("2026-01-01T00:00:00Z"),
    replay: replays.get(sequence) ?? null,
    headers: { "Dv-Error": "boom" },
    data: new TextEncoder().encode(JSON.stringify({ requestId: "t-1:one:1" })),
  });
  return {
    published,
    async list({ after, limit }) {
      return sequences.filter((s) => s > (after ?? 0)).slice(0, limit).map(letter);
    },
    async get(sequence) {
      return sequences.includes(sequence) ? letter(sequence) : null;
    },
    async replay(sequence): Promise<ReplayOutcome | null> {
      if (!sequences.includes(sequence)) return null;
      const earlier = replays.get(sequence);
      if (earlier) return { deadLetter: letter(sequence), replay: earlier, published: false };
      const replay = { replayedAt: new Date(), messageId: `DV_WORK:${sequence}:replay:${sequence}`, stream: "DV_WORK", sequence: 1000 + sequence };
      replays.set(sequence, replay);
      published.push(sequence);
      return { deadLetter: letter(sequence), replay, published: true };
    },
  };
}
