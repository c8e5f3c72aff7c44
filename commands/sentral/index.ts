export { executeTenancyCommand, tenancyCommands, tenancyScope, tenantHandler, type TenancyHandler } from "./tenancy.ts";
