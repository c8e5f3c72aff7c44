import { z } from "zod";
import { shortfall, type HypervisorState } from "./capacity.ts";
import { RESOURCE_KINDS, ResourcesSchema, type Resources } from "./common.ts";

/**
 * Placement: a pure, deterministic, explained choice of a hypervisor for a VM.
 *
 * Filters, in this order (a hypervisor's rejection names the first that fails):
 *   1. `datacenter`     — not in the requested datacenter;
 *   2. `capacity`       — free (allocatable with overcommit minus reserved) lacks vCPUs, memory or disk;
 *   3. `cordoned`       — cordoned (no new VMs);
 *   4. `network`        — a requested network attachment is not available there;
 *   5. `anti_affinity`  — already holds `maxPerHypervisor` VMs of the VM's anti-affinity group.
 * Score of the survivors (lower is better, compared in this order):
 *   - members of the VM's spread group already there (spread first),
 *   - then the highest utilisation fraction of any resource after placing (least loaded first),
 *   - ties broken by hypervisor name, then host id.
 * Same input, same output: candidate order never matters (rejections are
 * sorted by name, host id) and nothing depends on a clock or randomness.
 * When nothing survives, `reason` says why (`capacity` when any hypervisor of
 * the datacenter failed for capacity or cordon: waiting can help — the saga
 * blocks the task as soft; `no_hypervisor` / `network` / `anti_affinity` otherwise).
 */

/** `outranked`: it passed every filter but another hypervisor scored better (the explanation names both scores). */
export const PLACEMENT_REJECTIONS = ["datacenter", "capacity", "cordoned", "network", "anti_affinity", "outranked"] as const;
export const PlacementRejectionSchema = z.enum(PLACEMENT_REJECTIONS);
export type PlacementRejectionReason = z.infer<typeof PlacementRejectionSchema>;

export const PlacementRequestSchema = z.strictObject({
  vmId: z.string().min(1),
  datacenter: z.string().min(1),
  resources: ResourcesSchema,
  /** Network attachments the VM needs (every one must be available on the hypervisor). `user` (QEMU user-mode) is available everywhere. */
  networks: z.array(z.string().min(1)).default([]),
  antiAffinity: z.strictObject({ group: z.string().min(1), maxPerHypervisor: z.int().positive().default(1) }).nullable().default(null),
  spreadGroup: z.string().min(1).nullable().default(null),
});
export type PlacementRequest = z.infer<typeof PlacementRequestSchema>;
export type PlacementRequestInput = z.input<typeof PlacementRequestSchema>;

export interface PlacementCandidate {
  readonly hostId: string;
  readonly name: string;
  readonly datacenter: string;
  readonly cordoned: boolean;
  /** Allocatable capacity (physical × overcommit). */
  readonly allocatable: Resources;
  /** Sum of reservations. */
  readonly used: Resources;
  /** Network attachments available on this hypervisor. */
  readonly networks: readonly string[];
  /** VMs per group (anti-affinity and spread groups) reserved here. */
  readonly groupMembers: Readonly<Record<string, number>>;
}

/** The network every hypervisor has (QEMU user-mode networking). */
export const USER_NETWORK = "user";

/** A placement candidate from a hypervisor's capacity state plus the networks available there. */
export function candidateFrom(state: HypervisorState, networks: readonly string[]): PlacementCandidate {
  const groupMembers: Record<string, number> = {};
  for (const r of state.reservations.values()) for (const g of r.groups) groupMembers[g] = (groupMembers[g] ?? 0) + 1;
  return {
    hostId: state.hostId ?? "",
    name: state.name,
    datacenter: state.datacenter,
    cordoned: state.cordon !== null,
    allocatable: state.allocatable,
    used: state.used,
    networks,
    groupMembers,
  };
}

export const PlacementRejectedSchema = z.object({
  hypervisor: z.string(),
  hostId: z.string(),
  reason: PlacementRejectionSchema,
  detail: z.string(),
});
export type PlacementRejected = z.infer<typeof PlacementRejectedSchema>;

export const PlacementChosenSchema = z.object({
  hypervisor: z.string(),
  hostId: z.string(),
  score: z.object({ spreadMembers: z.number(), utilization: z.number() }),
});
export type PlacementChosen = z.infer<typeof PlacementChosenSchema>;

export const PLACEMENT_FAILURES = ["capacity", "no_hypervisor", "network", "anti_affinity"] as const;
export type PlacementFailure = (typeof PLACEMENT_FAILURES)[number];

export type PlacementDecision =
  | { readonly outcome: "placed"; readonly chosen: PlacementChosen; readonly rejected: readonly PlacementRejected[] }
  | {
      readonly outcome: "unplaceable";
      readonly reason: PlacementFailure;
      /** soft: may resolve by itself (capacity freed, hypervisor uncordoned); hard: needs an operator/user change. */
      readonly blocking: "soft" | "hard";
      readonly rejected: readonly PlacementRejected[];
    };

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function rejection(request: PlacementRequest, c: PlacementCandidate): PlacementRejected | null {
  const base = { hypervisor: c.name, hostId: c.hostId };
  if (c.datacenter !== request.datacenter) return { ...base, reason: "datacenter", detail: `in ${c.datacenter}, not ${request.datacenter}` };
  const free: Resources = {
    vcpus: c.allocatable.vcpus - c.used.vcpus,
    memoryMiB: c.allocatable.memoryMiB - c.used.memoryMiB,
    diskGiB: c.allocatable.diskGiB - c.used.diskGiB,
  };
  const short = shortfall(free, request.resources);
  if (short.length > 0) {
    return { ...base, reason: "capacity", detail: short.map((s) => `${s.resource} ${s.requested} > ${s.free} free`).join(", ") };
  }
  if (c.cordoned) return { ...base, reason: "cordoned", detail: "cordoned: no new VMs" };
  const missing = request.networks.filter((n) => n !== USER_NETWORK && !c.networks.includes(n));
  if (missing.length > 0) return { ...base, reason: "network", detail: `network attachment not available: ${[...missing].sort().join(", ")}` };
  if (request.antiAffinity) {
    const members = c.groupMembers[request.antiAffinity.group] ?? 0;
    if (members >= request.antiAffinity.maxPerHypervisor) {
      return { ...base, reason: "anti_affinity", detail: `holds ${members} of group ${request.antiAffinity.group} (max ${request.antiAffinity.maxPerHypervisor})` };
    }
  }
  return null;
}

function utilizationAfter(request: PlacementRequest, c: PlacementCandidate): number {
  let worst = 0;
  for (const kind of RESOURCE_KINDS) {
    const cap = c.allocatable[kind];
    const after = c.used[kind] + request.resources[kind];
    const fraction = cap === 0 ? (after === 0 ? 0 : 1) : after / cap;
    if (fraction > worst) worst = fraction;
  }
  return worst;
}

export function placeVm(requestInput: PlacementRequest | PlacementRequestInput, candidates: readonly PlacementCandidate[]): PlacementDecision {
  const request = PlacementRequestSchema.parse(requestInput);
  const rejected: PlacementRejected[] = [];
  let best: { c: PlacementCandidate; score: PlacementChosen["score"] } | null = null;
  const eligible: Array<{ c: PlacementCandidate; score: PlacementChosen["score"] }> = [];
  for (const c of candidates) {
    const why = rejection(request, c);
    if (why) {
      rejected.push(why);
      continue;
    }
    const score = { spreadMembers: request.spreadGroup ? (c.groupMembers[request.spreadGroup] ?? 0) : 0, utilization: utilizationAfter(request, c) };
    eligible.push({ c, score });
    if (best === null || better(score, c, best.score, best.c)) best = { c, score };
  }
  // Every hypervisor not chosen is explained, also those that only lost the ranking.
  for (const { c, score } of eligible) {
    if (c === best?.c) continue;
    rejected.push({
      hypervisor: c.name,
      hostId: c.hostId,
      reason: "outranked",
      detail: `spread ${score.spreadMembers}, utilization ${score.utilization.toFixed(3)} vs chosen ${best!.c.name}: spread ${best!.score.spreadMembers}, utilization ${best!.score.utilization.toFixed(3)}`,
    });
  }
  rejected.sort((a, b) => compareText(a.hypervisor, b.hypervisor) || compareText(a.hostId, b.hostId) || compareText(a.reason, b.reason) || compareText(a.detail, b.detail));
  if (best) return { outcome: "placed", chosen: { hypervisor: best.c.name, hostId: best.c.hostId, score: best.score }, rejected };

  const inDc = rejected.filter((r) => r.reason !== "datacenter");
  const has = (reason: PlacementRejectionReason) => inDc.some((r) => r.reason === reason);
  if (inDc.length === 0) return { outcome: "unplaceable", reason: "no_hypervisor", blocking: "hard", rejected };
  if (has("capacity") || has("cordoned")) return { outcome: "unplaceable", reason: "capacity", blocking: "soft", rejected };
  if (has("anti_affinity")) return { outcome: "unplaceable", reason: "anti_affinity", blocking: "soft", rejected };
  return { outcome: "unplaceable", reason: "network", blocking: "hard", rejected };
}

function better(score: PlacementChosen["score"], c: PlacementCandidate, bestScore: PlacementChosen["score"], b: PlacementCandidate): boolean {
  if (score.spreadMembers !== bestScore.spreadMembers) return score.spreadMembers < bestScore.spreadMembers;
  if (score.utilization !== bestScore.utilization) return score.utilization < bestScore.utilization;
  const byName = compareText(c.name, b.name);
  if (byName !== 0) return byName < 0;
  return compareText(c.hostId, b.hostId) < 0;
}
