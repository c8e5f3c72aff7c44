import type { Kysely } from "kysely";
import { principalOf, type Principal } from "../../projections/identitet/grants.ts";

/**
 * Roles per request, from the grants read model, through a small in-process
 * cache. The TTL is capped at 5 s: a revoked role stops working at most 5 s
 * after the grants projection applied the revocation (and at once on the
 * instance that served the revocation, which invalidates its entry). Failed
 * reads are not cached; concurrent misses for one subject share one query.
 */
export const MAX_ROLE_CACHE_TTL_MS = 5_000;

export interface PrincipalResolver {
  resolve(subject: string): Promise<Principal>;
  /** Forget a subject (after a grant or revocation served by this instance). */
  invalidate(subject: string): void;
}

export interface CachedPrincipalsOptions {
  readonly db: Kysely<any>;
  /** 0 disables caching; values above 5000 are refused. Default 5000. */
  readonly ttlMs?: number;
  /** Entries kept before the oldest are dropped (default 10 000). */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

export class CachedPrincipals implements PrincipalResolver {
  private readonly db: Kysely<any>;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, { principal: Promise<Principal>; expiresAt: number }>();

  constructor(options: CachedPrincipalsOptions) {
    const ttl = options.ttlMs ?? MAX_ROLE_CACHE_TTL_MS;
    if (!(ttl >= 0 && ttl <= MAX_ROLE_CACHE_TTL_MS)) throw new RangeError(`role cache TTL must be 0-${MAX_ROLE_CACHE_TTL_MS} ms, got ${ttl}`);
    this.db = options.db;
    this.ttlMs = ttl;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  resolve(subject: string): Promise<Principal> {
    if (this.ttlMs === 0) return principalOf(this.db, subject);
    const now = this.now();
    const hit = this.entries.get(subject);
    if (hit && hit.expiresAt > now) return hit.principal;
    if (hit) this.entries.delete(subject);

    const principal = principalOf(this.db, subject);
    const entry = { principal, expiresAt: now + this.ttlMs };
    this.entries.set(subject, entry);
    principal.catch(() => {
      if (this.entries.get(subject) === entry) this.entries.delete(subject);
    });
    if (this.entries.size > this.maxEntries) {
      // Map iterates in insertion order: drop the oldest.
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    return principal;
  }

  invalidate(subject: string): void {
    this.entries.delete(subject);
  }
}
