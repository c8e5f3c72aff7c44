import type { FastifyReply, FastifyRequest } from "fastify";
import type { ExpectedVersion } from "../../adapters/eventstore/port.ts";
import { ApiProblem } from "../problem.ts";

/**
 * Entity tags are the tenant stream's version: `W/"<stream_version>"`. Every
 * tenancy resource (tenant, its projects, environments and quotas) lives in
 * the tenant's one stream, so the tag of any of them is the version a write
 * must be decided on, and `If-Match` pins the command's expected version.
 *
 * The tag is weak because it names the version of the aggregate, not the
 * bytes of one representation. RFC 9110 says If-Match compares strongly (so a
 * weak tag would never match); this API deliberately accepts `W/"n"` and
 * `"n"` alike there, since the version is exactly what the client must name.
 */
export function etagFor(streamVersion: number): string {
  return `W/"${streamVersion}"`;
}

const SINGLE_TAG = /^\s*(?:W\/)?"(\d{1,10})"\s*$/;

/**
 * If-Match -> the expected version: absent -> undefined (unpinned), `*` ->
 * "exists", one tag -> its number. A list of tags (or garbage) is refused:
 * a command can be pinned to one version only.
 */
export function expectedVersionFrom(request: FastifyRequest): ExpectedVersion | undefined {
  const header = request.headers["if-match"];
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header.join(",") : header;
  if (value.trim() === "*") return "exists";
  const match = SINGLE_TAG.exec(value);
  if (!match) {
    throw new ApiProblem("invalid_if_match", `If-Match must be one entity tag such as W/"3" (or *), got ${JSON.stringify(value.slice(0, 100))}`, {
      errors: [{ path: "if-match", message: "must be one entity tag", in: "header" }],
    });
  }
  const version = Number(match[1]);
  if (!Number.isSafeInteger(version)) throw new ApiProblem("invalid_if_match", "the version in If-Match is too large");
  return version;
}

/** If-None-Match on a read: true when the client's copy is current (answer 304). */
export function notModified(request: FastifyRequest, etag: string): boolean {
  const header = request.headers["if-none-match"];
  if (header === undefined) return false;
  const value = Array.isArray(header) ? header.join(",") : header;
  if (value.trim() === "*") return true;
  const wanted = opaque(etag);
  return value.split(",").some((tag) => opaque(tag.trim()) === wanted);
}

function opaque(tag: string): string {
  return tag.startsWith("W/") ? tag.slice(2) : tag;
}

/** Sets ETag and answers 304 when If-None-Match matches; returns whether it did. */
export function sendIfNotModified(request: FastifyRequest, reply: FastifyReply, streamVersion: number): boolean {
  const etag = etagFor(streamVersion);
  reply.header("etag", etag);
  if (request.method === "GET" && notModified(request, etag)) {
    reply.code(304).send();
    return true;
  }
  return false;
}
