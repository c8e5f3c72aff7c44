/** Maskin VMs: hypervisor capacity, placement, images, disk images, VMs. Pure rules; see domain/maskin/README.md ("VMs"). */
export * from "./common.ts";
export * from "./stream.ts";
export * from "./mac.ts";
export * from "./capacity.ts";
export * from "./placement.ts";
export * from "./image.ts";
export * from "./disk.ts";
export * from "./vm.ts";
export * from "./ports.ts";
