import { z } from "zod";

/** Who caused a change. Every command and event carries one. */
export const ActorSchema = z.object({
  kind: z.enum(["user", "service", "system"]),
  id: z.string().min(1).max(200),
});
export type Actor = z.infer<typeof ActorSchema>;

/** Which part of the tenancy tree a change belongs to; drives authorization and filtering. */
export const ScopeSchema = z.object({
  tenantId: z.string().min(1).max(100),
  projectId: z.string().min(1).max(100).optional(),
  environmentId: z.string().min(1).max(100).optional(),
});
export type Scope = z.infer<typeof ScopeSchema>;

/** The platform's own scope, for platform-level streams (e.g. datacenters). */
export const PLATFORM_TENANT = "platform";
