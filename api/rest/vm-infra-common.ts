import type { FastifyRequest } from "fastify";
import { z } from "zod";
import type { CommandContext } from "../../commands/handler.ts";
import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import { isDomainError } from "../../domain/shared/errors.ts";
import { actorOf } from "../http/access.ts";
import { ApiProblem } from "../problem.ts";

/** What the hypervisor, image and disk image routes share. */

export const ResourcesSchema = z.object({ vcpus: z.number().int(), memoryMiB: z.number().int(), diskGiB: z.number().int() });
export const Timestamp = z.string().meta({ format: "date-time" });

/** The platform's command context for a request (hypervisors and images are the platform's). */
export function platformContext(request: FastifyRequest, datacenter: string | null = null): CommandContext {
  const actor = actorOf(request);
  return { actor: { kind: actor.kind, id: actor.id }, correlationId: request.id, scope: { tenantId: PLATFORM_TENANT }, datacenter };
}

/** A rule refusing the request in the resource's current state: 409 with the domain's code and details. */
export function conflictOnDomainError(error: unknown): never {
  if (isDomainError(error)) throw new ApiProblem(error.code, error.message, { details: error.details ?? {} }, 409);
  throw error;
}

export const forbidden = (what: string) => new ApiProblem("forbidden", `your roles do not allow you to ${what}`);
export const notFound = (code: string, message: string, details: Record<string, unknown>) => new ApiProblem(code, message, { details }, 404);
