/**
 * Streams of the VM contexts (see domain/maskin/README.md, "VMs").
 * - `maskin-hv-<hostId>`: one hypervisor's capacity and reservations (race-free reservation).
 * - `maskin-image-<name>`: one image's immutable versions.
 * - `maskin-disk-<datacenter>-<name>`: one disk image and the VMs that reference it.
 * - `maskin-vm-<vmId>`: one VM's desired state and lifecycle.
 */
export const MASKIN_HV_STREAM_PREFIX = "maskin-hv-";
export const MASKIN_IMAGE_STREAM_PREFIX = "maskin-image-";
export const MASKIN_DISK_STREAM_PREFIX = "maskin-disk-";
export const MASKIN_VM_STREAM_PREFIX = "maskin-vm-";

export const hypervisorStreamId = (hostId: string): string => `${MASKIN_HV_STREAM_PREFIX}${hostId}`;
export const imageStreamId = (name: string): string => `${MASKIN_IMAGE_STREAM_PREFIX}${name}`;
export const diskImageStreamId = (datacenter: string, name: string): string => `${MASKIN_DISK_STREAM_PREFIX}${datacenter}-${name}`;
export const vmStreamId = (vmId: string): string => `${MASKIN_VM_STREAM_PREFIX}${vmId}`;
