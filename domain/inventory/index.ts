/** Sentral inventory: datacenters, racks, hosts, switches, links; the platform MAC registry. */
export * from "./commands.ts";
export * from "./events.ts";
export * from "./names.ts";
export * from "./state.ts";
export * from "./stream.ts";
export { datacenterDecider } from "./datacenter.ts";
export { macRegistryDecider, initialMacRegistryState, type MacRegistryState } from "./mac-registry.ts";
