import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { DeadLettersUnavailableError, type DeadLetter, type DeadLetterReplay, type DeadLetters, type DeadLetterSummary } from "../../adapters/dlq/port.ts";
import { isPlatformAdmin, isPlatformAuditor } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { actorOf } from "../http/access.ts";
import { decodeCursor, PageQuerySchema, pageSchema, toPage } from "../http/pagination.ts";
import { ApiProblem } from "../problem.ts";
import { idempotencyHeader } from "./headers.ts";
import { apiSchemas } from "./schemas.ts";

/**
 * The dead-letter queue (DV_DLQ) for operators: messages the saga runtime or
 * a worker gave up on after `maxDeliver` deliveries, with where they came
 * from and why they died; and replay, which publishes one again to its
 * original subject (adapters/dlq/port.ts).
 *
 * Dead letters are the platform's, across tenants: platform-admins and
 * platform-wide auditors read them; only platform-admins replay. Anyone else
 * gets 403 for the list and, for a single dead letter, exactly the 404 of a
 * sequence that does not exist (decided before validation). Without a
 * DeadLetters port (no NATS wired in) or with NATS down, the routes answer
 * 503 dlq_unavailable to those allowed to call them.
 */
export interface DlqRouteDeps {
  readonly deadLetters: DeadLetters | null;
}

const TAGS = ["dlq"];
const Timestamp = z.string().meta({ format: "date-time", description: "RFC 3339 timestamp (UTC)" });
const LIST = "dlq";
const RETRY_AFTER_SECONDS = "2";

const ReplaySchema = z.object({
  replayedAt: Timestamp,
  messageId: z.string().describe("Nats-Msg-Id of the replayed copy: `<original stream>:<original sequence>:replay:<DLQ sequence>`"),
  stream: z.string().describe("The stream the copy was stored in"),
  sequence: z.number().int().describe("The copy's sequence in that stream"),
});

export const DeadLetterSummarySchema = z.object({
  sequence: z.number().int().describe("Sequence in DV_DLQ: the dead letter's id"),
  originalSubject: z.string().describe("The subject it died on, e.g. dv.task.evt.step_started"),
  originalStream: z.string(),
  originalSequence: z.number().int().nullable().describe("Its sequence in the original stream"),
  deliveryCount: z.number().int().nullable().describe("Deliveries before it was given up"),
  error: z.string().describe("The last error's text"),
  taskId: z.string().nullable().describe("The task it belongs to, when its body or headers name one"),
  requestId: z.string().nullable().describe("The work request it is or answers, when known"),
  eventType: z.string().nullable(),
  correlationId: z.string().nullable(),
  deadLetteredAt: Timestamp,
  replay: ReplaySchema.nullable().describe("Set once it was replayed; a replayed dead letter is never published again"),
});
apiSchemas.add(DeadLetterSummarySchema, { id: "DeadLetterSummary" });

export const DeadLetterSchema = DeadLetterSummarySchema.extend({
  headers: z.record(z.string(), z.string()).describe("Every header it carries"),
  bodyEncoding: z.enum(["json", "text", "base64"]).describe("json: `body` is the message pretty-printed; text: UTF-8 as sent; base64: binary"),
  body: z.string(),
});
apiSchemas.add(DeadLetterSchema, { id: "DeadLetter" });

const ReplayResultSchema = z.object({
  published: z.boolean().describe("False when an earlier replay had published it already: nothing was published now"),
  replay: ReplaySchema,
  deadLetter: DeadLetterSchema,
});
apiSchemas.add(ReplayResultSchema, { id: "DeadLetterReplayResult" });

const SequenceParams = z.object({ sequence: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).describe("The dead letter's sequence in DV_DLQ") });

const iso = (date: Date) => date.toISOString();
const renderReplay = (replay: DeadLetterReplay) => ({ ...replay, replayedAt: iso(replay.replayedAt) });

export function renderDeadLetterSummary(letter: DeadLetterSummary): z.infer<typeof DeadLetterSummarySchema> {
  return {
    sequence: letter.sequence,
    originalSubject: letter.originalSubject,
    originalStream: letter.originalStream,
    originalSequence: letter.originalSequence,
    deliveryCount: letter.deliveryCount,
    error: letter.error,
    taskId: letter.taskId,
    requestId: letter.requestId,
    eventType: letter.eventType,
    correlationId: letter.correlationId,
    deadLetteredAt: iso(letter.deadLetteredAt),
    replay: letter.replay ? renderReplay(letter.replay) : null,
  };
}

export function renderDeadLetter(letter: DeadLetter): z.infer<typeof DeadLetterSchema> {
  return { ...renderDeadLetterSummary(letter), headers: { ...letter.headers }, ...renderBody(letter.data) };
}

/** Pretty JSON when the body is JSON, else the text when it is UTF-8, else base64. */
export function renderBody(data: Uint8Array): { bodyEncoding: "json" | "text" | "base64"; body: string } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    return { bodyEncoding: "base64", body: Buffer.from(data).toString("base64") };
  }
  try {
    return { bodyEncoding: "json", body: JSON.stringify(JSON.parse(text), null, 2) };
  } catch {
    return { bodyEncoding: "text", body: text };
  }
}

const canRead = (actor: AuthenticatedActor) => isPlatformAdmin(actor) || isPlatformAuditor(actor);

function notFound(raw: unknown): ApiProblem {
  const sequence = String(raw ?? "");
  return new ApiProblem("dead_letter_not_found", `dead letter ${sequence} does not exist`, { details: { sequence } });
}

function unavailable(why: string): ApiProblem {
  return new ApiProblem("dlq_unavailable", why, { headers: { "retry-after": RETRY_AFTER_SECONDS } });
}

export const dlqRoutes: FastifyPluginAsyncZod<DlqRouteDeps> = async (app, deps) => {
  /** Access before validation: 403 for the list, the missing letter's 404 for one (see the file comment). */
  const allow = (mode: "list" | "read" | "replay") => async (request: FastifyRequest) => {
    const actor = actorOf(request);
    if (mode === "list") {
      if (!canRead(actor)) throw new ApiProblem("forbidden", "your roles do not allow you to read the dead-letter queue (platform-admin or a platform auditor)");
      return;
    }
    if (!canRead(actor)) throw notFound((request.params as { sequence?: unknown }).sequence);
    if (mode === "replay" && !isPlatformAdmin(actor)) throw new ApiProblem("forbidden", "your roles do not allow you to replay dead letters (it needs platform-admin)");
  };

  const port = async <T>(work: (deadLetters: DeadLetters) => Promise<T>): Promise<T> => {
    if (!deps.deadLetters) throw unavailable("this server has no NATS connection for the dead-letter queue");
    try {
      return await work(deps.deadLetters);
    } catch (error) {
      if (error instanceof DeadLettersUnavailableError) throw unavailable(`the dead-letter queue cannot be reached: ${error.message}`);
      throw error;
    }
  };

  app.get(
    "/v1/dlq",
    {
      schema: {
        operationId: "listDeadLetters",
        summary: "List dead letters, oldest first (platform-admin, platform auditors)",
        description: "Ordered by DV_DLQ sequence; the cursor is the last sequence of the page. Replayed dead letters stay listed, with `replay` set.",
        tags: TAGS,
        querystring: PageQuerySchema,
        response: { 200: pageSchema(DeadLetterSummarySchema) },
      },
      config: { access: { level: "authenticated" } },
      preValidation: allow("list"),
    },
    async (request) => {
      const { limit, cursor } = request.query;
      const afterKey = decodeCursor(LIST, cursor);
      const after = afterKey === undefined ? undefined : Number(afterKey);
      if (after !== undefined && (!Number.isSafeInteger(after) || after < 0)) {
        throw new ApiProblem("invalid_cursor", "the cursor is not valid here: it is not a cursor this API made", {
          errors: [{ path: "cursor", message: "it is not a cursor this API made", in: "query" }],
        });
      }
      const letters = await port((dl) => dl.list({ limit: limit + 1, ...(after !== undefined ? { after } : {}) }));
      return toPage(LIST, letters, limit, (letter) => String(letter.sequence), renderDeadLetterSummary);
    },
  );

  app.get(
    "/v1/dlq/:sequence",
    {
      schema: {
        operationId: "getDeadLetter",
        summary: "Get a dead letter with its headers and body (platform-admin, platform auditors)",
        tags: TAGS,
        params: SequenceParams,
        response: { 200: DeadLetterSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: allow("read"),
    },
    async (request) => {
      const letter = await port((dl) => dl.get(request.params.sequence));
      if (!letter) throw notFound(request.params.sequence);
      return renderDeadLetter(letter);
    },
  );

  app.post(
    "/v1/dlq/:sequence/replay",
    {
      schema: {
        operationId: "replayDeadLetter",
        summary: "Publish a dead letter again to its original subject (platform-admin)",
        description:
          "Publishes the message to its original subject and stream with a new Nats-Msg-Id " +
          "(`<original stream>:<original sequence>:replay:<DLQ sequence>`, so JetStream does not drop it as a copy of the original) " +
          "and the header Dv-Replay-Of. The dead letter stays in DV_DLQ, marked replayed. Once per dead letter: " +
          "replaying it again publishes nothing and answers the first replay with `published: false`.",
        tags: TAGS,
        params: SequenceParams,
        headers: idempotencyHeader,
        response: { 200: ReplayResultSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: allow("replay"),
    },
    async (request) => {
      const sequence = request.params.sequence;
      const outcome = await port((dl) => dl.replay(sequence));
      if (!outcome) throw notFound(sequence);
      request.log.info({ deadLetter: sequence, published: outcome.published, messageId: outcome.replay.messageId }, "dead letter replayed");
      return { published: outcome.published, replay: renderReplay(outcome.replay), deadLetter: renderDeadLetter(outcome.deadLetter) };
    },
  );
};
