import { z } from "zod";
import { HostPowerStateObservedSchema, PowerStateSchema } from "./power-sync.ts";

/**
 * Maskin events: a published contract (the relay sends them on NATS, the
 * `maskin.hosts` read model, the provisioning saga and the boot service read
 * them). Never change a shape in place: add a schemaVersion and an upcaster.
 * Every event carries `hostId`; host events carry `datacenter` and `taskId`
 * where the host's current task is known (null when it is not).
 */

const HostId = z.string().min(1);
const TaskId = z.string().min(1);
const Datacenter = z.string().min(1);
const At = z.string().min(1);
const Id = z.string().min(1);

export const ProvisioningStageSchema = z.enum(["allocated", "netboot-requested", "netboot-fetched", "installed", "install-failed"]);
export type ProvisioningStage = z.infer<typeof ProvisioningStageSchema>;

export const WipeStageSchema = z.enum(["requested", "netboot-fetched", "wiped", "wipe-failed"]);
export type WipeStage = z.infer<typeof WipeStageSchema>;

export const HostLifecycleStateSchema = z.enum(["available", "provisioning", "ready", "provision_failed", "releasing", "release_failed"]);
export type HostLifecycleState = z.infer<typeof HostLifecycleStateSchema>;

// ---- Pool ----

export const HostAllocatedSchema = z.object({
  datacenter: Datacenter,
  hostId: HostId,
  taskId: TaskId,
  tenantId: Id,
  projectId: Id,
  environmentId: Id.nullable(),
  at: At,
});
export const HostReturnedToPoolSchema = z.object({
  datacenter: Datacenter,
  hostId: HostId,
  /** The task that returned it. */
  taskId: TaskId,
  /** The task that held it until now. */
  heldByTaskId: TaskId,
  at: At,
});

export const poolEventSchemas = {
  HostAllocated: { schemaVersion: 1, schema: HostAllocatedSchema },
  HostReturnedToPool: { schemaVersion: 1, schema: HostReturnedToPoolSchema },
} as const;

type PoolSchemas = typeof poolEventSchemas;
export type PoolEventType = keyof PoolSchemas;
export type PoolEvent = { [T in PoolEventType]: { type: T; data: z.infer<PoolSchemas[T]["schema"]> } }[PoolEventType];
export type PoolEventOf<T extends PoolEventType> = Extract<PoolEvent, { type: T }>;
export const POOL_EVENT_TYPES = Object.keys(poolEventSchemas) as PoolEventType[];

export function poolEvent<T extends PoolEventType>(type: T, data: PoolEventOf<T>["data"]): PoolEventOf<T> {
  return { type, data } as PoolEventOf<T>;
}

// ---- Host ----

export const HostProvisioningStartedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  taskId: TaskId,
  tenantId: Id,
  projectId: Id,
  environmentId: Id.nullable(),
  role: z.enum(["controlplane", "worker"]),
  at: At,
});
export const HostNetbootRequestedSchema = z.object({ hostId: HostId, datacenter: Datacenter, taskId: TaskId, at: At });
export const HostNetbootFetchedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  taskId: TaskId,
  mac: z.string(),
  /** SHA-256 (hex) of the one-time install token; the plain token is never recorded. */
  tokenDigest: z.string(),
  at: At,
});
export const HostInstallReportedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  taskId: TaskId,
  outcome: z.enum(["succeeded", "failed"]),
  message: z.string(),
  at: At,
});
export const HostProvisionedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  taskId: TaskId,
  nextBoot: z.literal("disk"),
  at: At,
});
export const HostProvisioningFailedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  taskId: TaskId,
  /** The last stage the host reached. */
  stage: ProvisioningStageSchema,
  reason: z.string(),
  at: At,
});
export const HostReleaseStartedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  /** The release task. */
  taskId: TaskId,
  /** The provisioning task whose host this was. */
  provisionedByTaskId: TaskId,
  at: At,
});
export const HostReleasedSchema = z.object({ hostId: HostId, datacenter: Datacenter, taskId: TaskId, at: At });
/**
 * The release task failed or was cancelled before the host was wiped and
 * returned: the host is `release_failed` (an available host being wiped
 * stays available) until another release task takes over.
 */
export const HostReleaseFailedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  /** The release task that failed. */
  taskId: TaskId,
  reason: z.string(),
  /** How far this task's wipe had come (null: it never asked for one); a wipe still in progress ends here. */
  wipeStage: WipeStageSchema.nullable(),
  at: At,
});
/** The release task asks for the host's disks to be wiped: the boot service now serves the wipe image to this host. */
export const HostWipeRequestedSchema = z.object({ hostId: HostId, datacenter: Datacenter, taskId: TaskId, at: At });
export const HostWipeNetbootFetchedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  taskId: TaskId,
  mac: z.string(),
  /** SHA-256 (hex) of the one-time wipe token; the plain token is never recorded. */
  tokenDigest: z.string(),
  at: At,
});
export const HostWipeReportedSchema = z.object({
  hostId: HostId,
  datacenter: Datacenter,
  taskId: TaskId,
  outcome: z.enum(["succeeded", "failed"]),
  message: z.string(),
  /** The block devices the wiper overwrote (`/dev/vda`), as it reported them. */
  devices: z.array(z.string()),
  /** Bytes it overwrote, over all devices. */
  bytesWiped: z.number().int().nonnegative(),
  at: At,
});
export const HostDesiredPowerSetSchema = z.object({ hostId: HostId, state: PowerStateSchema, taskId: TaskId, at: At });

export const hostEventSchemas = {
  HostProvisioningStarted: { schemaVersion: 1, schema: HostProvisioningStartedSchema },
  HostNetbootRequested: { schemaVersion: 1, schema: HostNetbootRequestedSchema },
  HostNetbootFetched: { schemaVersion: 1, schema: HostNetbootFetchedSchema },
  HostInstallReported: { schemaVersion: 1, schema: HostInstallReportedSchema },
  HostProvisioned: { schemaVersion: 1, schema: HostProvisionedSchema },
  HostProvisioningFailed: { schemaVersion: 1, schema: HostProvisioningFailedSchema },
  HostReleaseStarted: { schemaVersion: 1, schema: HostReleaseStartedSchema },
  HostReleased: { schemaVersion: 1, schema: HostReleasedSchema },
  HostReleaseFailed: { schemaVersion: 1, schema: HostReleaseFailedSchema },
  HostWipeRequested: { schemaVersion: 1, schema: HostWipeRequestedSchema },
  HostWipeNetbootFetched: { schemaVersion: 1, schema: HostWipeNetbootFetchedSchema },
  HostWipeReported: { schemaVersion: 1, schema: HostWipeReportedSchema },
  HostPowerStateObserved: { schemaVersion: 1, schema: HostPowerStateObservedSchema },
  HostDesiredPowerSet: { schemaVersion: 1, schema: HostDesiredPowerSetSchema },
} as const;

type HostSchemas = typeof hostEventSchemas;
export type HostEventType = keyof HostSchemas;
export type HostEvent = { [T in HostEventType]: { type: T; data: z.infer<HostSchemas[T]["schema"]> } }[HostEventType];
export type HostEventOf<T extends HostEventType> = Extract<HostEvent, { type: T }>;
export const HOST_EVENT_TYPES = Object.keys(hostEventSchemas) as HostEventType[];

export function hostEvent<T extends HostEventType>(type: T, data: HostEventOf<T>["data"]): HostEventOf<T> {
  return { type, data } as HostEventOf<T>;
}
