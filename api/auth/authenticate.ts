import { decodeJwt } from "jose";
import type { BuiltInIssuer } from "../../adapters/identity/issuer.ts";
import type { OidcVerifier } from "../../adapters/identity/oidc.ts";
import { InvalidTokenError, type VerifiedToken } from "../../adapters/identity/port.ts";
import type { PrincipalResolver } from "./principals.ts";
import type { AuthenticatedActor } from "./types.ts";

/** What turns a bearer token into an actor: the verifiers and where roles come from. */
export interface TokenAuthenticator {
  readonly issuer: BuiltInIssuer;
  readonly oidc: OidcVerifier | null;
  readonly principals: PrincipalResolver;
}

/**
 * Verifies a token with the verifier its (unverified) `iss` names: the
 * built-in issuer or the OIDC provider. Throws InvalidTokenError for anything
 * wrong with it (reason "unavailable" when the provider cannot be reached).
 */
export async function verifyToken(token: string, auth: Pick<TokenAuthenticator, "issuer" | "oidc">): Promise<VerifiedToken> {
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch (error) {
    throw new InvalidTokenError("the token is not a JWT", "malformed", { cause: error });
  }
  if (typeof iss !== "string") throw new InvalidTokenError("the token names no issuer", "claims");
  if (iss === auth.issuer.issuer) return auth.issuer.verify(token);
  if (auth.oidc?.accepts(iss)) return auth.oidc.verify(token);
  throw new InvalidTokenError(`tokens of issuer ${iss} are not accepted here`, "claims");
}

/** The actor of a verified token; roles come from the grants read model, never from the token. */
export async function actorOf(verified: VerifiedToken, principals: PrincipalResolver): Promise<AuthenticatedActor> {
  const principal = await principals.resolve(verified.subject);
  return Object.freeze({
    kind: verified.kind ?? principal.kind ?? "user",
    id: verified.subject,
    roles: Object.freeze([...principal.roles]),
    issuer: verified.issuer,
  });
}

/** For channels without an HTTP answer to give (a WebSocket's connection_init): null for any invalid token. */
export async function authenticateToken(token: string, auth: TokenAuthenticator): Promise<AuthenticatedActor | null> {
  try {
    return await actorOf(await verifyToken(token, auth), auth.principals);
  } catch (error) {
    if (error instanceof InvalidTokenError) return null;
    throw error;
  }
}
