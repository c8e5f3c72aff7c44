import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import type { NatsNamespace } from "../../nats/namespace.ts";

/**
 * A VM's serial console over NATS core request/reply: the hypervisor
 * worker of host H in datacenter D answers on
 * `dv.hypervisor.console.<D>.<H>` (console.ts); the API calls
 * `requestVmConsole` for `GET /v1/vms/{id}/console` (the VM's host from the
 * vms read model). Request/reply, not JetStream: a console read is a query,
 * nothing to keep or redeliver, and it must fail fast when the host is down.
 */

export const CONSOLE_SERVICE = "hypervisor";

export const ConsoleRequestSchema = z.object({
  vmId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/),
  offset: z.number().int().min(0).default(0),
  maxBytes: z.number().int().min(1).max(512 * 1024).default(64 * 1024),
});
export type ConsoleRequest = z.input<typeof ConsoleRequestSchema>;

export const ConsoleReplySchema = z.union([
  z.object({ text: z.string(), nextOffset: z.number().int().min(0), size: z.number().int().min(0) }),
  z.object({ error: z.string() }),
]);
export type ConsoleReply = z.infer<typeof ConsoleReplySchema>;

/** The subject the worker of `hostId` in `datacenter` answers console reads on. */
export function consoleSubject(namespace: NatsNamespace, datacenter: string, hostId: string): string {
  return namespace.subject(CONSOLE_SERVICE, "console", datacenter, hostId);
}

/** The hypervisor's worker did not answer in time (no worker for the host, or it is down): a 503-type failure. */
export class ConsoleUnavailableError extends Error {
  override readonly name = "ConsoleUnavailableError";
}

export interface VmConsoleRequest {
  readonly datacenter: string;
  readonly hostId: string;
  readonly vmId: string;
  readonly offset?: number;
  readonly maxBytes?: number;
  /** Default 5 000 ms. */
  readonly timeoutMs?: number;
}

/**
 * Up to `maxBytes` of the VM's serial log from `offset`, read by its
 * hypervisor's worker: `{text, nextOffset, size}` (follow by asking again
 * from `nextOffset`), or `{error}` when the worker refused the read. No
 * worker answering (none for the host, or it is down) is a
 * ConsoleUnavailableError.
 */
export async function requestVmConsole(nc: NatsConnection, namespace: NatsNamespace, request: VmConsoleRequest): Promise<ConsoleReply> {
  const body = { vmId: request.vmId, offset: request.offset ?? 0, maxBytes: request.maxBytes ?? 64 * 1024 };
  let reply;
  try {
    reply = await nc.request(consoleSubject(namespace, request.datacenter, request.hostId), JSON.stringify(body), { timeout: request.timeoutMs ?? 5_000 });
  } catch (error) {
    throw new ConsoleUnavailableError(
      `the hypervisor worker of host ${request.hostId} in ${request.datacenter} did not answer: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  return ConsoleReplySchema.parse(reply.json());
}
