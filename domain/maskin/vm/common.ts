import { z } from "zod";

/** Shared field schemas of the VM contexts (capacity, placement, images, disk images, VMs). */

export const At = z.iso.datetime({ offset: true });
export const Id = z.string().min(1).max(100);
/** A datacenter name (a NATS subject token and part of stream ids too). */
export const Datacenter = z.string().min(1).max(63).regex(/^[a-z0-9][a-z0-9_-]*$/, { message: "must be lowercase a-z, 0-9, '_' or '-'" });
/** A name used in a stream id (image, disk image, group). */
export const ResourceName = z.string().min(1).max(63).regex(/^[a-z0-9][a-z0-9._-]*$/, { message: "must be lowercase a-z, 0-9, '.', '_' or '-'" });
export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, { message: "must be a SHA-256 digest in lowercase hex" });

/** What a VM takes from a hypervisor. */
export const ResourcesSchema = z.strictObject({
  vcpus: z.int().positive(),
  memoryMiB: z.int().positive(),
  diskGiB: z.int().nonnegative(),
});
export type Resources = z.infer<typeof ResourcesSchema>;

export const RESOURCE_KINDS = ["vcpus", "memoryMiB", "diskGiB"] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

export const ZERO_RESOURCES: Resources = Object.freeze({ vcpus: 0, memoryMiB: 0, diskGiB: 0 });

export function addResources(a: Resources, b: Resources): Resources {
  return { vcpus: a.vcpus + b.vcpus, memoryMiB: a.memoryMiB + b.memoryMiB, diskGiB: a.diskGiB + b.diskGiB };
}

export function sameResources(a: Resources, b: Resources): boolean {
  return a.vcpus === b.vcpus && a.memoryMiB === b.memoryMiB && a.diskGiB === b.diskGiB;
}

export function unreachable(value: never): never {
  throw new Error(`unhandled message ${JSON.stringify(value)}`);
}
