export { executeTenancyCommand, tenancyCommands, tenancyScope, tenantHandler, type TenancyHandler } from "./tenancy.ts";
export { defaultEnvironmentId, projectBootstrapTaskId } from "./bootstrap.ts";
