import type { BmcDriver, BmcSettings } from "../../domain/inventory/events.ts";
import type { SecretReader } from "./port.ts";

/** Everything a BMC driver needs to open a session, password included: only ever built inside a worker. */
export interface BmcEndpoint {
  readonly driver: BmcDriver;
  readonly address: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
}

export class BmcEndpointUnavailableError extends Error {
  override readonly name = "BmcEndpointUnavailableError";
}

/**
 * A host's BMC endpoint with its password revealed. `host` is the host as the
 * datacenter aggregate holds it (commands/inventory `loadDatacenter(store,
 * dc)` then `state.hosts.get(hostId)`): the trusted identity, never a pending
 * one. Throws when the host has no BMC or no stored credential.
 */
export async function bmcEndpointOf(
  host: { readonly name: string; readonly bmcAddress: string | null; readonly bmc: BmcSettings | null },
  secrets: SecretReader,
): Promise<BmcEndpoint> {
  if (!host.bmc || !host.bmcAddress) throw new BmcEndpointUnavailableError(`host ${host.name} has no BMC endpoint`);
  if (!host.bmc.credentialRef) throw new BmcEndpointUnavailableError(`host ${host.name} has no BMC credential: import its password`);
  return {
    driver: host.bmc.driver,
    address: host.bmcAddress,
    port: host.bmc.port,
    username: host.bmc.username,
    password: await secrets.reveal(host.bmc.credentialRef),
    ...(host.bmc.cipherSuite !== undefined ? { cipherSuite: host.bmc.cipherSuite } : {}),
  };
}
