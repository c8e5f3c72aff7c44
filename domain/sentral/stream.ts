/** Every tenancy event of a tenant lives in this one stream (see README: consistency boundary). */
export const TENANT_STREAM_PREFIX = "tenant-";

export function tenantStreamId(tenantId: string): string {
  return `${TENANT_STREAM_PREFIX}${tenantId}`;
}
