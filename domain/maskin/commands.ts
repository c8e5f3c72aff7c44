import { z } from "zod";
import { HostPowerStateObservedSchema, PowerStateSchema } from "./power-sync.ts";

/**
 * Maskin commands (pool and host aggregates). Time (`at`, ISO 8601) and every
 * id come in with the command: the deciders have no clock.
 */

const At = z.iso.datetime({ offset: true });
const HostId = z.string().min(1).max(100);
const TaskId = z.string().min(1).max(100);
const Id = z.string().min(1).max(100);
/** A datacenter name (a NATS subject token too). */
const Datacenter = z.string().min(1).max(63).regex(/^[a-z0-9][a-z0-9_-]*$/, { message: "must be lowercase a-z, 0-9, '_' or '-'" });
/** SHA-256, hex. */
const TokenDigest = z.string().regex(/^[0-9a-f]{64}$/, { message: "must be a SHA-256 digest in lowercase hex" });
const Mac = z.string().min(1).max(64);

export const HostRoleSchema = z.enum(["controlplane", "worker"]);
export type ProvisionRole = z.infer<typeof HostRoleSchema>;
export const InstallOutcomeSchema = z.enum(["succeeded", "failed"]);
export type InstallOutcome = z.infer<typeof InstallOutcomeSchema>;

// ---- Pool (stream maskin-pool-<datacenter>) ----

export const AllocateHostSchema = z.strictObject({
  type: z.literal("AllocateHost"),
  datacenter: Datacenter,
  hostId: HostId,
  taskId: TaskId,
  tenantId: Id,
  projectId: Id,
  environmentId: Id.nullable(),
  at: At,
});

export const ReturnHostToPoolSchema = z.strictObject({
  type: z.literal("ReturnHostToPool"),
  datacenter: Datacenter,
  hostId: HostId,
  /** The task returning it (a release task: not necessarily the one that holds it). */
  taskId: TaskId,
  at: At,
});

export const PoolCommandSchema = z.discriminatedUnion("type", [AllocateHostSchema, ReturnHostToPoolSchema]);
export type PoolCommand = z.infer<typeof PoolCommandSchema>;
export type PoolCommandInput = z.input<typeof PoolCommandSchema>;
export type AllocateHost = z.infer<typeof AllocateHostSchema>;
export type ReturnHostToPool = z.infer<typeof ReturnHostToPoolSchema>;

// ---- Host (stream maskin-host-<hostId>) ----

export const StartProvisioningSchema = z.strictObject({
  type: z.literal("StartProvisioning"),
  hostId: HostId,
  datacenter: Datacenter,
  taskId: TaskId,
  tenantId: Id,
  projectId: Id,
  environmentId: Id.nullable(),
  role: HostRoleSchema,
  at: At,
});

export const RecordNetbootRequestedSchema = z.strictObject({
  type: z.literal("RecordNetbootRequested"),
  hostId: HostId,
  taskId: TaskId,
  at: At,
});

/** The boot service served this host's iPXE script during provisioning; only the one-time token's digest is recorded. */
export const RecordNetbootFetchedSchema = z.strictObject({
  type: z.literal("RecordNetbootFetched"),
  hostId: HostId,
  mac: Mac,
  tokenDigest: TokenDigest,
  at: At,
});

/** The installer's callback, authenticated by the digest of the token it was given. */
export const RecordInstallReportedSchema = z.strictObject({
  type: z.literal("RecordInstallReported"),
  hostId: HostId,
  tokenDigest: TokenDigest,
  outcome: InstallOutcomeSchema,
  message: z.string().max(2000).default(""),
  at: At,
});

export const CompleteProvisioningSchema = z.strictObject({ type: z.literal("CompleteProvisioning"), hostId: HostId, taskId: TaskId, at: At });

export const FailProvisioningSchema = z.strictObject({
  type: z.literal("FailProvisioning"),
  hostId: HostId,
  taskId: TaskId,
  reason: z.string().min(1).max(2000),
  at: At,
});

export const StartReleaseSchema = z.strictObject({ type: z.literal("StartRelease"), hostId: HostId, taskId: TaskId, at: At });
export const CompleteReleaseSchema = z.strictObject({ type: z.literal("CompleteRelease"), hostId: HostId, taskId: TaskId, at: At });

/** The release task failed or was cancelled (its saga's onFailed / compensation): the host is release_failed. */
export const FailReleaseSchema = z.strictObject({
  type: z.literal("FailRelease"),
  hostId: HostId,
  taskId: TaskId,
  reason: z.string().min(1).max(2000),
  at: At,
});

/** The release task asks for a wipe (after powering the host off, before netbooting it). */
export const RequestWipeSchema = z.strictObject({ type: z.literal("RequestWipe"), hostId: HostId, datacenter: Datacenter, taskId: TaskId, at: At });

/** The boot service served this host's wipe script; only the one-time wipe token's digest is recorded. */
export const RecordWipeNetbootFetchedSchema = z.strictObject({
  type: z.literal("RecordWipeNetbootFetched"),
  hostId: HostId,
  mac: Mac,
  tokenDigest: TokenDigest,
  at: At,
});

/** The wiper's callback, authenticated by the digest of the token it was given. */
export const RecordWipeReportedSchema = z.strictObject({
  type: z.literal("RecordWipeReported"),
  hostId: HostId,
  tokenDigest: TokenDigest,
  outcome: InstallOutcomeSchema,
  message: z.string().max(2000).default(""),
  devices: z.array(z.string().min(1).max(200)).max(64).default([]),
  bytesWiped: z.number().int().nonnegative().default(0),
  at: At,
});

/** The power observer's accepted change (power-sync.ts `observePower` → `observed`). */
export const RecordPowerObservationSchema = HostPowerStateObservedSchema.extend({
  type: z.literal("RecordPowerObservation"),
}).strict();

export const SetDesiredPowerSchema = z.strictObject({
  type: z.literal("SetDesiredPower"),
  hostId: HostId,
  state: PowerStateSchema,
  taskId: TaskId,
  at: At,
});

export const HostCommandSchema = z.discriminatedUnion("type", [
  StartProvisioningSchema,
  RecordNetbootRequestedSchema,
  RecordNetbootFetchedSchema,
  RecordInstallReportedSchema,
  CompleteProvisioningSchema,
  FailProvisioningSchema,
  StartReleaseSchema,
  CompleteReleaseSchema,
  FailReleaseSchema,
  RequestWipeSchema,
  RecordWipeNetbootFetchedSchema,
  RecordWipeReportedSchema,
  RecordPowerObservationSchema,
  SetDesiredPowerSchema,
]);
export type HostCommand = z.infer<typeof HostCommandSchema>;
export type HostCommandInput = z.input<typeof HostCommandSchema>;
export type HostCommandType = HostCommand["type"];
export type HostCommandOf<T extends HostCommandType> = Extract<HostCommand, { type: T }>;
