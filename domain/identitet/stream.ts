/** Every grant and revocation of a subject lives in this one stream. */
export const IDENTITY_STREAM_PREFIX = "identity-";

export function identityStreamId(subject: string): string {
  return `${IDENTITY_STREAM_PREFIX}${subject}`;
}
