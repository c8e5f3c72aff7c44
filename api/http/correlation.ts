import type { FastifyInstance } from "fastify";
import type { IncomingMessage } from "node:http";
import { v7 as uuidv7 } from "uuid";

/**
 * Every request has a correlation id: the client's `X-Correlation-Id` when it
 * is a sane token, else a fresh UUIDv7. It is fastify's request id (so
 * `request.log` lines carry it as `correlationId`), it is echoed back in the
 * response header, and it becomes the `correlationId` of every event the
 * request's command appends.
 */
export const CORRELATION_HEADER = "x-correlation-id";
export const CORRELATION_LOG_LABEL = "correlationId";

const TOKEN = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function correlationIdOf(raw: IncomingMessage): string {
  const header = raw.headers[CORRELATION_HEADER];
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && TOKEN.test(value) ? value : uuidv7();
}

/** Echoes the id on every response, errors included (onRequest, so even a 401 or 429 carries it). */
export function echoCorrelationId(app: FastifyInstance): void {
  app.addHook("onRequest", async (request, reply) => {
    reply.header(CORRELATION_HEADER, request.id);
  });
}
