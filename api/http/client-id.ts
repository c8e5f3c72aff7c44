import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";

/**
 * Ids a client may choose end up in URLs and in every event's scope: RFC 3986
 * unreserved characters only, and a tenant may not take the platform's own
 * scope. One rule for REST and GraphQL.
 */
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9._~-]*$/;
export const CLIENT_ID_MESSAGE = "may contain only A-Z a-z 0-9 . _ ~ -";
export const PLATFORM_SCOPE_MESSAGE = `"${PLATFORM_TENANT}" is the platform's own scope`;
