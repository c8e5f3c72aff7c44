import { z } from "zod";
import { RoleSchema } from "./roles.ts";
import { SubjectKindSchema, SubjectSchema } from "./subjects.ts";

/**
 * Identitet events: the facts of who holds which role. Every one lives in its
 * subject's stream (`identity-<subject>`) and carries the subject in its data.
 * Published contract (the grants projection and auditors read them): never
 * change a shape in place; add a schemaVersion and an upcaster.
 *
 * `role` has exactly the shape of api/auth/types.ts Role (absent optional
 * ids are absent, not null: that is the Role contract everyone else reads).
 * Who granted and when is in the envelope (actor, occurredAt).
 */
export const RoleGrantedSchema = z.object({
  subject: SubjectSchema,
  subjectKind: SubjectKindSchema,
  role: RoleSchema,
});

export const RoleRevokedSchema = z.object({
  subject: SubjectSchema,
  role: RoleSchema,
});

export const identityEventSchemas = {
  RoleGranted: { schemaVersion: 1, schema: RoleGrantedSchema },
  RoleRevoked: { schemaVersion: 1, schema: RoleRevokedSchema },
} as const satisfies Record<string, { schemaVersion: number; schema: z.ZodType }>;

export type IdentityEventType = keyof typeof identityEventSchemas;
export const IDENTITY_EVENT_TYPES = Object.keys(identityEventSchemas) as IdentityEventType[];

export type IdentityEventData<T extends IdentityEventType> = z.infer<(typeof identityEventSchemas)[T]["schema"]>;

export type IdentityEvent = { [T in IdentityEventType]: { type: T; data: IdentityEventData<T> } }[IdentityEventType];

export type IdentityEventOf<T extends IdentityEventType> = Extract<IdentityEvent, { type: T }>;

export function isIdentityEventType(type: string): type is IdentityEventType {
  return Object.hasOwn(identityEventSchemas, type);
}
