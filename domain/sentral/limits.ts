import { z } from "zod";

/** The resources a quota can cap. */
export const QUOTA_RESOURCES = ["vcpus", "memoryMiB", "vms", "hosts", "networks", "buckets"] as const;
export const QuotaResourceSchema = z.enum(QUOTA_RESOURCES);
export type QuotaResource = z.infer<typeof QuotaResourceSchema>;

const LimitValue = z.int().nonnegative();

/**
 * A change to limits: for each resource named, a number sets the limit and
 * null clears it; resources not named are left as they are. Unknown resource
 * names are refused (a typo must not silently do nothing).
 */
export const QuotaLimitsPatchSchema = z.strictObject({
  vcpus: LimitValue.nullable().optional(),
  memoryMiB: LimitValue.nullable().optional(),
  vms: LimitValue.nullable().optional(),
  hosts: LimitValue.nullable().optional(),
  networks: LimitValue.nullable().optional(),
  buckets: LimitValue.nullable().optional(),
});
export type QuotaLimitsPatch = z.infer<typeof QuotaLimitsPatchSchema>;

/** Effective limits: a resource absent from the record is unlimited. */
export type QuotaLimits = Readonly<Partial<Record<QuotaResource, number>>>;

export const NO_LIMITS: QuotaLimits = Object.freeze({});

/** Only the entries of `patch` that would change `current`; empty when the patch is already in effect. */
export function limitsChange(current: QuotaLimits, patch: QuotaLimitsPatch): QuotaLimitsPatch {
  const change: Partial<Record<QuotaResource, number | null>> = {};
  for (const resource of QUOTA_RESOURCES) {
    const wanted = patch[resource];
    if (wanted === undefined) continue;
    const existing = current[resource];
    if (wanted === null ? existing !== undefined : existing !== wanted) change[resource] = wanted;
  }
  return change;
}

export function applyLimits(current: QuotaLimits, patch: QuotaLimitsPatch): QuotaLimits {
  const next: Partial<Record<QuotaResource, number>> = { ...current };
  for (const resource of QUOTA_RESOURCES) {
    const wanted = patch[resource];
    if (wanted === undefined) continue;
    if (wanted === null) delete next[resource];
    else next[resource] = wanted;
  }
  return next;
}

export function isEmptyPatch(patch: QuotaLimitsPatch): boolean {
  return QUOTA_RESOURCES.every((resource) => patch[resource] === undefined);
}
