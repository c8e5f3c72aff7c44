/** Sentral tenancy: tenants, projects, environments and their quotas. */
export * from "./commands.ts";
export * from "./events.ts";
export * from "./limits.ts";
export * from "./names.ts";
export * from "./state.ts";
export * from "./stream.ts";
export { tenancyDecider } from "./decider.ts";
export { requireActiveTenant, requireTenant } from "./tenant.ts";
export { requireActiveProject, requireProject } from "./project.ts";
