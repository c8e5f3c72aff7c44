/** Maskin's BMC adapters: one port (`port.ts`), two drivers, one per-BMC session lock. */
import { IpmitoolDriver, type IpmitoolDriverOptions } from "./ipmitool.ts";
import type { BmcDriver, BmcEndpoint } from "./port.ts";
import { RedfishDriver, type RedfishDriverOptions } from "./redfish.ts";

export * from "./port.ts";
export { IpmitoolDriver, classifyIpmitoolFailure, type IpmitoolDriverOptions } from "./ipmitool.ts";
export { RedfishDriver, type RedfishDriverOptions } from "./redfish.ts";
export { KeyedMutex, bmcSessions, sessionKey } from "./serial.ts";

/** The driver an endpoint names. */
export function createBmcDriver(endpoint: BmcEndpoint, options: IpmitoolDriverOptions & RedfishDriverOptions = {}): BmcDriver {
  switch (endpoint.driver) {
    case "ipmi":
      return new IpmitoolDriver(endpoint, options);
    case "redfish":
      return new RedfishDriver(endpoint, options);
    default:
      throw new TypeError(`unknown BMC driver ${String((endpoint as { driver: unknown }).driver)}`);
  }
}
