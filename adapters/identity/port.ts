/**
 * What the API needs from anything that vouches for a bearer token: the
 * built-in issuer (issuer.ts) and an OIDC provider (oidc.ts). Roles are never
 * part of a verified token: they are read from the grants read model for each
 * request, so a revocation takes effect without waiting for tokens to expire.
 */
export interface VerifiedToken {
  /** The subject as grants name it (OIDC subjects carry their issuer prefix). */
  readonly subject: string;
  /** From the token when the issuer says (built-in `kind` claim); null when it does not (OIDC). */
  readonly kind: "user" | "service" | null;
  /** The `iss` the token was verified against. */
  readonly issuer: string;
  readonly expiresAt: Date;
  /** `jti` when present. */
  readonly tokenId: string | null;
}

export interface TokenVerifier {
  /** The `iss` value this verifier accepts; the API routes a token to its verifier by it. */
  readonly issuer: string;
  /** Throws InvalidTokenError for anything that is not a valid, unexpired token of this issuer. */
  verify(token: string): Promise<VerifiedToken>;
}

/** The token is not acceptable: bad signature, wrong issuer/audience, expired, malformed. */
export class InvalidTokenError extends Error {
  override readonly name = "InvalidTokenError";
  constructor(
    message: string,
    /** Short machine reason: expired, signature, claims, malformed, unknown_key, unavailable. */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
