/** Everything about one datacenter (its racks, hosts, switches, links) lives in `datacenter-<name>`. */
export const DATACENTER_STREAM_PREFIX = "datacenter-";

export function datacenterStreamId(datacenter: string): string {
  return `${DATACENTER_STREAM_PREFIX}${datacenter}`;
}

/** The platform-wide MAC registry: one stream, so a MAC is claimed by one host across every datacenter. */
export const MAC_REGISTRY_STREAM = "inventory-mac-registry";

/** The secret subject of a host's BMC credential: what a stored password is for. */
export function bmcSecretSubject(datacenter: string, hostName: string): string {
  return `bmc:${datacenter}/${hostName}`;
}
