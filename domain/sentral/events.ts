import { z } from "zod";
import { DescriptionSchema, DisplayNameSchema, IdSchema, NameSchema } from "./names.ts";
import { QuotaLimitsPatchSchema } from "./limits.ts";

/**
 * Tenancy events: the facts of Sentral's tenancy context. Every one lives in
 * its tenant's stream (`tenant-<tenantId>`, see stream.ts) and carries the
 * tenantId in its data, so a projection never needs the stream id to place it.
 *
 * These type names and data shapes are a published contract (projections,
 * sagas and auditors read them). Never change a shape in place: add a new
 * schemaVersion and an upcaster from the old one.
 *
 * Optional texts are always present in the data, as null when absent, so a
 * reader sees one shape.
 */

const TenantId = IdSchema;
const ProjectId = IdSchema;
const EnvironmentId = IdSchema;

export const TenantCreatedSchema = z.object({
  tenantId: TenantId,
  name: NameSchema,
  displayName: DisplayNameSchema.nullable(),
});

/** Carries the resulting name and displayName (both, even when only one changed). */
export const TenantRenamedSchema = z.object({
  tenantId: TenantId,
  name: NameSchema,
  displayName: DisplayNameSchema.nullable(),
});

export const TenantSuspendedSchema = z.object({
  tenantId: TenantId,
  reason: z.string().min(1).max(1000),
});

export const TenantResumedSchema = z.object({
  tenantId: TenantId,
});

export const ProjectCreatedSchema = z.object({
  tenantId: TenantId,
  projectId: ProjectId,
  name: NameSchema,
  description: DescriptionSchema.nullable(),
});

/** The environments a bootstrapped project gets, in this order. */
export const DEFAULT_ENVIRONMENTS = ["dev", "prod"] as const;

/**
 * A project was created with a request to bootstrap it: the project-bootstrap
 * saga turns this fact into task `taskId` (default environments, then the
 * tenant's quota). Recorded with ProjectCreated, in the same append, so the
 * request can't be lost between the two.
 */
export const ProjectBootstrapRequestedSchema = z.object({
  tenantId: TenantId,
  projectId: ProjectId,
  taskId: z.string().min(1).max(100),
  environments: z.array(NameSchema),
});

export const ProjectArchivedSchema = z.object({
  tenantId: TenantId,
  projectId: ProjectId,
});

export const EnvironmentCreatedSchema = z.object({
  tenantId: TenantId,
  projectId: ProjectId,
  environmentId: EnvironmentId,
  name: NameSchema,
});

export const EnvironmentArchivedSchema = z.object({
  tenantId: TenantId,
  projectId: ProjectId,
  environmentId: EnvironmentId,
});

/**
 * `limits` holds only the resources whose limit changed: a number sets the
 * limit, null clears it (unlimited); resources not named keep their previous
 * limit. Never empty (an unchanged quota emits no event).
 */
export const TenantQuotaSetSchema = z.object({
  tenantId: TenantId,
  limits: QuotaLimitsPatchSchema,
});

/** Same `limits` semantics as TenantQuotaSet, for one project. */
export const ProjectQuotaSetSchema = z.object({
  tenantId: TenantId,
  projectId: ProjectId,
  limits: QuotaLimitsPatchSchema,
});

/** Every tenancy event type with its current schema version; readers validate with it. */
export const tenancyEventSchemas = {
  TenantCreated: { schemaVersion: 1, schema: TenantCreatedSchema },
  TenantRenamed: { schemaVersion: 1, schema: TenantRenamedSchema },
  TenantSuspended: { schemaVersion: 1, schema: TenantSuspendedSchema },
  TenantResumed: { schemaVersion: 1, schema: TenantResumedSchema },
  ProjectCreated: { schemaVersion: 1, schema: ProjectCreatedSchema },
  ProjectBootstrapRequested: { schemaVersion: 1, schema: ProjectBootstrapRequestedSchema },
  ProjectArchived: { schemaVersion: 1, schema: ProjectArchivedSchema },
  EnvironmentCreated: { schemaVersion: 1, schema: EnvironmentCreatedSchema },
  EnvironmentArchived: { schemaVersion: 1, schema: EnvironmentArchivedSchema },
  TenantQuotaSet: { schemaVersion: 1, schema: TenantQuotaSetSchema },
  ProjectQuotaSet: { schemaVersion: 1, schema: ProjectQuotaSetSchema },
} as const satisfies Record<string, { schemaVersion: number; schema: z.ZodType }>;

export type TenancyEventType = keyof typeof tenancyEventSchemas;
export const TENANCY_EVENT_TYPES = Object.keys(tenancyEventSchemas) as TenancyEventType[];

export type TenancyEventData<T extends TenancyEventType> = z.infer<(typeof tenancyEventSchemas)[T]["schema"]>;

/** A tenancy event as deciders produce and consume it: type plus validated data (no envelope). */
export type TenancyEvent = { [T in TenancyEventType]: { type: T; data: TenancyEventData<T> } }[TenancyEventType];

export type TenancyEventOf<T extends TenancyEventType> = Extract<TenancyEvent, { type: T }>;

export function isTenancyEventType(type: string): type is TenancyEventType {
  return Object.hasOwn(tenancyEventSchemas, type);
}
