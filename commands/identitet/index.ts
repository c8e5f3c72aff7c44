export { executeIdentityCommand, identityHandler, roleScope } from "./grants.ts";
