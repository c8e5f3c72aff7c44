import { START, type LogPosition } from "./port.ts";

export function comparePositions(a: LogPosition, b: LogPosition): number {
  if (a.transactionId !== b.transactionId) return a.transactionId < b.transactionId ? -1 : 1;
  if (a.globalPosition !== b.globalPosition) return a.globalPosition < b.globalPosition ? -1 : 1;
  return 0;
}

/** `"<transactionId>.<globalPosition>"`: the cursor as APIs and headers carry it. */
export function formatPosition(position: LogPosition): string {
  return `${position.transactionId}.${position.globalPosition}`;
}

export function parsePosition(text: string): LogPosition {
  const match = /^(\d{1,20})\.(\d{1,20})$/.exec(text.trim());
  if (!match) throw new RangeError(`not a log position: ${JSON.stringify(text)} (expected "<transactionId>.<globalPosition>")`);
  return { transactionId: BigInt(match[1]!), globalPosition: BigInt(match[2]!) };
}

export function isStart(position: LogPosition): boolean {
  return comparePositions(position, START) === 0;
}
