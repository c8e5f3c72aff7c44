/**
 * Maskin streams (see README: Provisioning contract).
 * - `maskin-pool-<datacenter>`: which host of a datacenter is allocated to which task (race-free allocation).
 * - `maskin-host-<hostId>`: one host's lifecycle (provisioning, release, power), `hostId` = the inventory's host id.
 */
export const MASKIN_POOL_STREAM_PREFIX = "maskin-pool-";
export const MASKIN_HOST_STREAM_PREFIX = "maskin-host-";

export function poolStreamId(datacenter: string): string {
  return `${MASKIN_POOL_STREAM_PREFIX}${datacenter}`;
}

export function hostStreamId(hostId: string): string {
  return `${MASKIN_HOST_STREAM_PREFIX}${hostId}`;
}
