import { z } from "zod";
import { DescriptionSchema, DisplayNameSchema, IdSchema, NameSchema } from "./names.ts";
import { QuotaLimitsPatchSchema } from "./limits.ts";
import { TaskIdSchema } from "../task/commands.ts";

/**
 * Tenancy commands. Each carries every id it needs (ids are chosen by the
 * caller, never by the decider). Objects are strict: an unknown field is a
 * mistake worth reporting, not something to drop silently.
 */

export const CreateTenantSchema = z.strictObject({
  type: z.literal("CreateTenant"),
  tenantId: IdSchema,
  name: NameSchema,
  displayName: DisplayNameSchema.optional(),
});

/** displayName: absent keeps the current one, null clears it, a string sets it. */
export const RenameTenantSchema = z.strictObject({
  type: z.literal("RenameTenant"),
  tenantId: IdSchema,
  name: NameSchema,
  displayName: DisplayNameSchema.nullable().optional(),
});

export const SuspendTenantSchema = z.strictObject({
  type: z.literal("SuspendTenant"),
  tenantId: IdSchema,
  reason: z.string().trim().min(1, { message: "a reason is required" }).max(1000),
});

export const ResumeTenantSchema = z.strictObject({
  type: z.literal("ResumeTenant"),
  tenantId: IdSchema,
});

export const CreateProjectSchema = z.strictObject({
  type: z.literal("CreateProject"),
  tenantId: IdSchema,
  projectId: IdSchema,
  name: NameSchema,
  description: DescriptionSchema.optional(),
  /**
   * Set to bootstrap the project (default environments, the tenant's quota)
   * as this task; the caller picks the id so it can follow the task at once.
   */
  bootstrapTaskId: TaskIdSchema.optional(),
});

export const ArchiveProjectSchema = z.strictObject({
  type: z.literal("ArchiveProject"),
  tenantId: IdSchema,
  projectId: IdSchema,
});

export const CreateEnvironmentSchema = z.strictObject({
  type: z.literal("CreateEnvironment"),
  tenantId: IdSchema,
  projectId: IdSchema,
  environmentId: IdSchema,
  name: NameSchema,
});

export const ArchiveEnvironmentSchema = z.strictObject({
  type: z.literal("ArchiveEnvironment"),
  tenantId: IdSchema,
  projectId: IdSchema,
  environmentId: IdSchema,
});

export const SetTenantQuotaSchema = z.strictObject({
  type: z.literal("SetTenantQuota"),
  tenantId: IdSchema,
  limits: QuotaLimitsPatchSchema,
});

export const SetProjectQuotaSchema = z.strictObject({
  type: z.literal("SetProjectQuota"),
  tenantId: IdSchema,
  projectId: IdSchema,
  limits: QuotaLimitsPatchSchema,
});

export const TenancyCommandSchema = z.discriminatedUnion("type", [
  CreateTenantSchema,
  RenameTenantSchema,
  SuspendTenantSchema,
  ResumeTenantSchema,
  CreateProjectSchema,
  ArchiveProjectSchema,
  CreateEnvironmentSchema,
  ArchiveEnvironmentSchema,
  SetTenantQuotaSchema,
  SetProjectQuotaSchema,
]);

export type TenancyCommand = z.infer<typeof TenancyCommandSchema>;
export type TenancyCommandType = TenancyCommand["type"];
export type TenancyCommandOf<T extends TenancyCommandType> = Extract<TenancyCommand, { type: T }>;

export const TENANCY_COMMAND_TYPES = [
  "CreateTenant",
  "RenameTenant",
  "SuspendTenant",
  "ResumeTenant",
  "CreateProject",
  "ArchiveProject",
  "CreateEnvironment",
  "ArchiveEnvironment",
  "SetTenantQuota",
  "SetProjectQuota",
] as const satisfies readonly TenancyCommandType[];

export type CreateTenant = TenancyCommandOf<"CreateTenant">;
export type RenameTenant = TenancyCommandOf<"RenameTenant">;
export type SuspendTenant = TenancyCommandOf<"SuspendTenant">;
export type ResumeTenant = TenancyCommandOf<"ResumeTenant">;
export type CreateProject = TenancyCommandOf<"CreateProject">;
export type ArchiveProject = TenancyCommandOf<"ArchiveProject">;
export type CreateEnvironment = TenancyCommandOf<"CreateEnvironment">;
export type ArchiveEnvironment = TenancyCommandOf<"ArchiveEnvironment">;
export type SetTenantQuota = TenancyCommandOf<"SetTenantQuota">;
export type SetProjectQuota = TenancyCommandOf<"SetProjectQuota">;
