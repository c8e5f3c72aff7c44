import { z } from "zod";
import { RoleSchema } from "./roles.ts";
import { SubjectKindSchema, SubjectSchema } from "./subjects.ts";

/** Identitet commands; strict like every command (an unknown field is reported, not dropped). */
export const GrantRoleSchema = z.strictObject({
  type: z.literal("GrantRole"),
  subject: SubjectSchema,
  subjectKind: SubjectKindSchema,
  role: RoleSchema,
});

export const RevokeRoleSchema = z.strictObject({
  type: z.literal("RevokeRole"),
  subject: SubjectSchema,
  role: RoleSchema,
});

export const IdentityCommandSchema = z.discriminatedUnion("type", [GrantRoleSchema, RevokeRoleSchema]);

export type IdentityCommand = z.infer<typeof IdentityCommandSchema>;
export type IdentityCommandType = IdentityCommand["type"];
export type IdentityCommandOf<T extends IdentityCommandType> = Extract<IdentityCommand, { type: T }>;
export type GrantRole = IdentityCommandOf<"GrantRole">;
export type RevokeRole = IdentityCommandOf<"RevokeRole">;

export const IDENTITY_COMMAND_TYPES = ["GrantRole", "RevokeRole"] as const satisfies readonly IdentityCommandType[];
