import { createBmcDriver, type BmcDriver, type BmcDriverOptions, type BmcEndpoint, type BmcExchange } from "../../bmc/index.ts";
import type { CommandStore } from "../../../commands/pipeline.ts";
import { loadDatacenter } from "../../../commands/inventory/index.ts";
import { bmcEndpointOf } from "../../secrets/bmc.ts";
import type { SecretReader } from "../../secrets/port.ts";
import type { HostState as InventoryHost } from "../../../domain/inventory/state.ts";

/**
 * How the maskin worker reaches a host's BMC: the host from the inventory
 * (the datacenter stream, its trusted identity: never a pending change), the
 * password revealed from the secret store in memory, a driver from
 * `createBmcDriver`. Every driver shares the process-wide per-BMC lock
 * (adapters/bmc/serial.ts), so the power observer and a task's action never
 * talk to one BMC at the same time.
 */

export class HostNotInInventoryError extends Error {
  override readonly name = "HostNotInInventoryError";
}

export interface BmcAccessOptions {
  readonly store: Pick<CommandStore, "readStream">;
  readonly secrets: SecretReader;
  readonly datacenter: string;
  /** Per exchange (default: the driver's, 10 s). */
  readonly timeoutMs?: number;
  /** Tests: build drivers another way. */
  readonly createDriver?: (endpoint: BmcEndpoint, options: BmcDriverOptions) => BmcDriver;
}

export interface OpenedBmc {
  readonly host: InventoryHost;
  readonly driver: BmcDriver;
  /** Every exchange this driver had so far (never the password: see adapters/bmc/port.ts). */
  readonly exchanges: BmcExchange[];
}

export class BmcAccess {
  constructor(private readonly options: BmcAccessOptions) {}

  get datacenter(): string {
    return this.options.datacenter;
  }

  /** The event store the inventory is read from (the host streams live there too). */
  get store(): Pick<CommandStore, "readStream"> {
    return this.options.store;
  }

  /** The datacenter's hosts that have a BMC address and settings. */
  async hostsWithBmc(): Promise<InventoryHost[]> {
    const dc = await loadDatacenter(this.options.store as CommandStore, this.options.datacenter);
    if (dc.status !== "present") return [];
    return [...dc.hosts.values()].filter((h) => h.bmc !== null && h.bmcAddress !== null).sort((a, b) => a.hostId.localeCompare(b.hostId));
  }

  async host(hostId: string): Promise<InventoryHost> {
    const dc = await loadDatacenter(this.options.store as CommandStore, this.options.datacenter);
    const host = dc.status === "present" ? dc.hosts.get(hostId) : undefined;
    if (!host) throw new HostNotInInventoryError(`host ${hostId} is not in the inventory of datacenter ${this.options.datacenter}`);
    return host;
  }

  /** A driver for the host's BMC, recording its exchanges. Throws BmcEndpointUnavailableError without BMC or credential. */
  async open(hostOrId: string | InventoryHost): Promise<OpenedBmc> {
    const host = typeof hostOrId === "string" ? await this.host(hostOrId) : hostOrId;
    const endpoint = await bmcEndpointOf(host, this.options.secrets);
    const exchanges: BmcExchange[] = [];
    const options: BmcDriverOptions = {
      onExchange: (exchange) => exchanges.push(exchange),
      ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
    };
    const driver = (this.options.createDriver ?? createBmcDriver)(endpoint, options);
    return { host, driver, exchanges };
  }
}
