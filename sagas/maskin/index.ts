/** Maskin's sagas: bare-metal provisioning, release, power and the BMC check (domain/maskin/README.md). */
export * from "./common.ts";
export * from "./host-provision.ts";
export * from "./host-release.ts";
export * from "./host-power.ts";
