import type { FastifyReply, FastifyRequest } from "fastify";
import type { ExpectedVersion } from "../../adapters/eventstore/port.ts";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import type { CommandResult } from "../../commands/handler.ts";
import { executeTenancyCommand } from "../../commands/sentral/tenancy.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import type { TenancyCommand } from "../../domain/sentral/commands.ts";
import type { TenancyEvent } from "../../domain/sentral/events.ts";
import type { Scope } from "../../domain/shared/envelope.ts";
import { actorOf } from "../http/access.ts";
import { etagFor, expectedVersionFrom } from "../http/etag.ts";
import type { ReadYourWrites } from "../http/read-your-writes.ts";
import type { ApiMetrics } from "../observability/metrics.ts";
import type { TenancyReadModel } from "../read/tenancy.ts";

/** What the resource plugins need: the store to write, the read model to answer, read-your-writes, metrics. */
export interface RestDeps {
  readonly store: CommandStore;
  readonly read: TenancyReadModel;
  readonly ryw: ReadYourWrites;
  readonly metrics: ApiMetrics;
}

export interface Written {
  readonly result: CommandResult<TenancyEvent>;
  /** The read model has applied the write (false: the bound passed; answer 202). */
  readonly visible: boolean;
}

/**
 * Runs one tenancy command for the request: the actor is the authenticated
 * one, the correlation id the request's, the scope the path's, and If-Match
 * (when sent) pins the expected version. Then waits, bounded, until the read
 * model shows the write and sets X-Dv-Position. Errors propagate to the
 * problem handler (DomainError, ConcurrencyError, ...).
 */
export async function runCommand(
  deps: RestDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  command: TenancyCommand,
  scope: Scope,
  options: { expectedVersion?: ExpectedVersion } = {},
): Promise<Written> {
  const actor = actorOf(request);
  const expectedVersion = options.expectedVersion ?? expectedVersionFrom(request);
  const result = await executeTenancyCommand(deps.store, command, {
    actor: { kind: actor.kind, id: actor.id },
    correlationId: request.id,
    scope,
    ...(expectedVersion !== undefined ? { expectedVersion } : {}),
  });
  for (const event of result.events) deps.metrics.eventsAppended.inc({ type: event.type });
  request.log.info(
    { command: command.type, stream: result.streamId, version: result.version, appended: result.events.length },
    "command ran",
  );
  const visible = await deps.ryw.afterWrite(reply, result.position);
  return { result, visible };
}

/**
 * The answer to a write: the resource as the read model shows it, with its
 * ETag (201 + Location for a create that created, 200 otherwise), or 202 with
 * where and from which position to read it when the read model was too slow
 * (or does not show it).
 */
export async function answerWrite<Row extends { stream_version: number }, Body>(
  reply: FastifyReply,
  written: Written,
  resource: { location: string; created?: boolean; load: () => Promise<Row | undefined>; render: (row: Row) => Body },
): Promise<Body | { status: "accepted"; position: string; location: string }> {
  const row = written.visible ? await resource.load() : undefined;
  if (!row) {
    reply.header("location", resource.location);
    reply.code(202);
    return {
      status: "accepted",
      position: written.result.position ? formatPosition(written.result.position) : "0.0",
      location: resource.location,
    };
  }
  reply.header("etag", etagFor(row.stream_version));
  if (resource.created) reply.header("location", resource.location);
  reply.code(resource.created ? 201 : 200);
  return resource.render(row);
}
