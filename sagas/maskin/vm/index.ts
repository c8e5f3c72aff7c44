/** Maskin VM sagas: create, start/stop/reboot, reconcile, delete, and disk image removal (domain/maskin/README.md, "VMs"). */
export * from "./common.ts";
export * from "./create.ts";
export * from "./power.ts";
export * from "./delete.ts";
