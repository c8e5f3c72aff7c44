import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import jcs from "canonicalize";
import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { ApiProblem } from "../problem.ts";

/**
 * `Idempotency-Key` on POST (other methods ignore it: PUT is idempotent by
 * itself, and this API has no non-idempotent PATCH body).
 *
 * Keys are scoped to the actor (kind + id): two actors may use the same key.
 * A key is 1-255 printable ASCII characters. The first request with a key
 * reserves it with a hash of (method, URL, body); its response (status,
 * headers, body) is stored when it is sent. Then, for 24 hours from the first
 * use (`ttlMs`):
 * - same key, same request: the stored response is replayed, with
 *   `Idempotency-Replayed: true`; nothing runs again;
 * - same key, different method/URL/body: 422 `idempotency_key_reused`;
 * - same key while the first is still running: 409 `idempotency_key_in_use`
 *   (retry later); a reservation whose request died without answering is
 *   taken over after `staleAfterMs` (default 2 min);
 * - a first response that was a 5xx is not kept: the same request may run
 *   again.
 * Every response below 500 is stored, errors included (a refused request
 * refuses the same way again). Requests refused before the handler (401,
 * 404/403 by access, 400 by validation, 429) reserve nothing.
 *
 * A create without a client-chosen id gets the id reserved with the key, so
 * a re-run after a crash or a 5xx decides the *same* create again, which the
 * domain answers as a no-op instead of creating a second resource.
 *
 * Expired keys are purged every `purgeEveryMs` (default 10 min).
 */
export const IDEMPOTENCY_HEADER = "idempotency-key";
export const REPLAYED_HEADER = "idempotency-replayed";
/** Headers kept with a stored response (the correlation id is always the new request's). */
const STORED_HEADERS = ["content-type", "etag", "location", "x-dv-position", "x-dv-task"] as const;
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;
/** The package's types describe a CommonJS namespace; at run time its default export is the function. */
const canonicalize = jcs as unknown as (input: unknown) => string | undefined;

export interface IdempotencyOptions {
  readonly ttlMs?: number;
  readonly staleAfterMs?: number;
  readonly purgeEveryMs?: number;
}

export interface IdempotencyReservation {
  readonly actorKind: string;
  readonly actorId: string;
  readonly key: string;
  /** The id a create without a client id uses: the same for every run of this key. */
  readonly generatedId: string;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set on a POST with an Idempotency-Key that this request owns (not on replays). */
    idempotency: IdempotencyReservation | null;
  }
}

interface StoredRow {
  method: string;
  route: string;
  request_hash: string;
  state: "pending" | "completed" | "retryable";
  response_status: number | null;
  response_headers: Record<string, string> | null;
  response_body: string | null;
}

/** The id for a new resource: the client's, else the one reserved with the Idempotency-Key, else a fresh UUIDv7. */
export function newResourceId(request: FastifyRequest, clientId: string | undefined): string {
  return clientId ?? request.idempotency?.generatedId ?? uuidv7();
}

export function registerIdempotency(app: FastifyInstance, pool: pg.Pool, options: IdempotencyOptions = {}): void {
  const ttlMs = options.ttlMs ?? 24 * 60 * 60 * 1000;
  const staleAfterMs = options.staleAfterMs ?? 120_000;
  const purgeEveryMs = options.purgeEveryMs ?? 10 * 60 * 1000;

  app.decorateRequest("idempotency", null);

  app.addHook("preHandler", async (request, reply) => {
    if (request.method !== "POST") return;
    const header = request.headers[IDEMPOTENCY_HEADER];
    if (header === undefined) return;
    const key = Array.isArray(header) ? header.join(",") : header;
    if (!KEY_PATTERN.test(key)) {
      throw new ApiProblem("invalid_idempotency_key", "Idempotency-Key must be 1-255 printable ASCII characters", {
        errors: [{ path: IDEMPOTENCY_HEADER, message: "must be 1-255 printable ASCII characters", in: "header" }],
      });
    }
    const actor = request.actor;
    if (!actor) return; // only authenticated requests reach a handler that writes
    const route = `${request.method} ${request.routeOptions.url ?? request.url}`;
    const hash = requestHash(request);

    for (let attempt = 0; attempt < 3; attempt++) {
      const reserved = await pool.query<{ generated_id: string }>(
        `insert into api.idempotency_keys as k
           (actor_kind, actor_id, key, method, route, request_hash, state, generated_id, expires_at)
         values ($1, $2, $3, $4, $5, $6, 'pending', $7, now() + $8 * interval '1 millisecond')
         on conflict (actor_kind, actor_id, key) do update set
           method = excluded.method, route = excluded.route, request_hash = excluded.request_hash,
           state = 'pending', response_status = null, response_headers = null, response_body = null,
           generated_id = case when k.expires_at <= now() then excluded.generated_id else k.generated_id end,
           created_at = case when k.expires_at <= now() then now() else k.created_at end,
           expires_at = case when k.expires_at <= now() then excluded.expires_at else k.expires_at end,
           updated_at = now()
         where k.expires_at <= now()
            or (k.request_hash = excluded.request_hash
                and (k.state = 'retryable' or (k.state = 'pending' and k.updated_at < now() - $9 * interval '1 millisecond')))
         returning generated_id`,
        [actor.kind, actor.id, key, request.method, route, hash, uuidv7(), ttlMs, staleAfterMs],
      );
      const mine = reserved.rows[0];
      if (mine) {
        request.idempotency = { actorKind: actor.kind, actorId: actor.id, key, generatedId: mine.generated_id };
        return;
      }

      const { rows } = await pool.query<StoredRow>(
        `select method, route, request_hash, state, response_status, response_headers, response_body
           from api.idempotency_keys where actor_kind = $1 and actor_id = $2 and key = $3 and expires_at > now()`,
        [actor.kind, actor.id, key],
      );
      const stored = rows[0];
      if (!stored) continue; // expired or purged in between: reserve again
      if (stored.request_hash !== hash) {
        throw new ApiProblem(
          "idempotency_key_reused",
          `Idempotency-Key ${JSON.stringify(key)} was used for another request (${stored.route}); use a new key for a new request`,
        );
      }
      if (stored.state === "completed" && stored.response_status !== null) {
        return replay(reply, stored);
      }
      if (stored.state === "pending") {
        throw new ApiProblem("idempotency_key_in_use", `a request with Idempotency-Key ${JSON.stringify(key)} is still running; retry shortly`, {
          headers: { "retry-after": "1" },
        });
      }
      // retryable with our hash but the upsert did not take it: someone else just did; loop.
    }
    throw new ApiProblem("idempotency_key_in_use", `Idempotency-Key ${JSON.stringify(key)} is contended; retry shortly`, {
      headers: { "retry-after": "1" },
    });
  });

  app.addHook("onSend", async (request, reply, payload) => {
    const reservation = request.idempotency;
    if (!reservation) return payload;
    request.idempotency = null; // store once, even if onSend runs again for an error
    try {
      if (reply.statusCode >= 500) {
        await pool.query(
          `update api.idempotency_keys set state = 'retryable', updated_at = now()
            where actor_kind = $1 and actor_id = $2 and key = $3 and state = 'pending'`,
          [reservation.actorKind, reservation.actorId, reservation.key],
        );
      } else {
        const headers: Record<string, string> = {};
        for (const name of STORED_HEADERS) {
          const value = reply.getHeader(name);
          if (value !== undefined) headers[name] = String(value);
        }
        await pool.query(
          `update api.idempotency_keys
              set state = 'completed', response_status = $4, response_headers = $5, response_body = $6, updated_at = now()
            where actor_kind = $1 and actor_id = $2 and key = $3 and state = 'pending'`,
          [reservation.actorKind, reservation.actorId, reservation.key, reply.statusCode, headers, bodyText(payload)],
        );
      }
    } catch (error) {
      // The response still goes out; the reservation stays pending and is taken over when stale.
      request.log.error({ err: error }, "could not store the idempotent response");
    }
    return payload;
  });

  let purge: NodeJS.Timeout | undefined;
  app.addHook("onReady", async () => {
    purge = setInterval(() => {
      pool.query("delete from api.idempotency_keys where expires_at <= now()").catch((error: unknown) => {
        app.log.warn({ err: error }, "purging expired idempotency keys failed");
      });
    }, purgeEveryMs);
    purge.unref();
  });
  app.addHook("onClose", async () => {
    if (purge) clearInterval(purge);
  });
}

function requestHash(request: FastifyRequest): string {
  const text = canonicalize({ method: request.method, url: request.url, body: request.body ?? null }) ?? "";
  return createHash("sha256").update(text).digest("hex");
}

function bodyText(payload: unknown): string | null {
  if (payload === null || payload === undefined) return null;
  if (typeof payload === "string") return payload;
  if (Buffer.isBuffer(payload)) return payload.toString("utf8");
  return null; // streams are not replayable; this API sends none on POST
}

function replay(reply: FastifyReply, stored: StoredRow): FastifyReply {
  reply.code(stored.response_status!);
  for (const [name, value] of Object.entries(stored.response_headers ?? {})) reply.header(name, value);
  reply.header(REPLAYED_HEADER, "true");
  return reply.send(stored.response_body ?? undefined);
}
