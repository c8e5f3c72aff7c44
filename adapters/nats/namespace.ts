/**
 * Where Dataverket's subjects and streams live on a NATS server.
 *
 * Production uses the empty namespace: subjects `dv.<service>.…`, streams
 * `DV_EVENTS`, `DV_WORK`, `DV_RESULTS`, `DV_DLQ` (sagas/README.md). A test
 * gets its own namespace so test files sharing one server never see each
 * other's messages: namespace `t1a2b` gives subjects `t1a2b.dv.<service>.…`
 * and streams `T1A2B_DV_EVENTS`. Every subject or stream name anyone builds
 * goes through these helpers, so the same code runs in both.
 */
export interface NatsNamespace {
  /** "" in production; a NATS token ([a-z0-9_-]) otherwise. */
  readonly prefix: string;
  /** `subject("maskin", "cmd", "power", "dc1")` -> `[prefix.]dv.maskin.cmd.power.dc1`. Tokens may be `*` or a final `>`. */
  subject(...tokens: string[]): string;
  /** A full `dv.…` subject (as subjectForEvent returns) inside this namespace. */
  qualify(subject: string): string;
  /** The reverse of qualify: `[prefix.]dv.x.y` -> `dv.x.y`; throws for a subject outside the namespace. */
  unqualify(subject: string): string;
  /** `stream("DV_EVENTS")` -> `[PREFIX_]DV_EVENTS` (also for consumer and KV bucket names). */
  stream(name: string): string;
}

export const SUBJECT_ROOT = "dv";

/** The four JetStream streams of the topology (sagas/README.md), unqualified. */
export const STREAMS = {
  events: "DV_EVENTS",
  work: "DV_WORK",
  results: "DV_RESULTS",
  dlq: "DV_DLQ",
} as const;

export type StreamKey = keyof typeof STREAMS;

const PREFIX = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const NAME = /^[A-Za-z0-9_-]+$/;

export function natsNamespace(prefix = ""): NatsNamespace {
  if (prefix !== "" && !PREFIX.test(prefix)) {
    throw new RangeError(`NATS namespace must be empty or 1-32 of [a-z0-9_-] starting with a letter or digit, got ${JSON.stringify(prefix)}`);
  }
  const root = prefix ? `${prefix}.${SUBJECT_ROOT}` : SUBJECT_ROOT;
  const streamPrefix = prefix ? `${prefix.toUpperCase()}_` : "";
  return Object.freeze({
    prefix,
    subject(...tokens: string[]): string {
      tokens.forEach((token, index) => {
        const last = index === tokens.length - 1;
        if (!isSubjectToken(token) && token !== "*" && !(token === ">" && last)) {
          throw new RangeError(`not a NATS subject token: ${JSON.stringify(token)} in ${JSON.stringify(tokens)}`);
        }
      });
      return [root, ...tokens].join(".");
    },
    qualify(subject: string): string {
      if (subject !== SUBJECT_ROOT && !subject.startsWith(`${SUBJECT_ROOT}.`)) {
        throw new RangeError(`not a ${SUBJECT_ROOT}.… subject: ${JSON.stringify(subject)}`);
      }
      return prefix ? `${prefix}.${subject}` : subject;
    },
    unqualify(subject: string): string {
      if (subject !== root && !subject.startsWith(`${root}.`)) {
        throw new RangeError(`subject ${JSON.stringify(subject)} is outside namespace ${JSON.stringify(prefix)}`);
      }
      return prefix ? subject.slice(prefix.length + 1) : subject;
    },
    stream(name: string): string {
      if (!NAME.test(name)) throw new RangeError(`not a stream name: ${JSON.stringify(name)}`);
      return `${streamPrefix}${name}`;
    },
  });
}

/** The production namespace. */
export const DEFAULT_NAMESPACE: NatsNamespace = natsNamespace("");

/** A literal NATS token: non-empty, no `.`, `*`, `>` or whitespace. */
export function isSubjectToken(token: string): boolean {
  return token.length > 0 && !/[\s.*>]/.test(token);
}
