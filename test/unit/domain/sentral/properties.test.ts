import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DomainError } from "../../../../domain/shared/errors.ts";
import type { TenancyCommand } from "../../../../domain/sentral/commands.ts";
import { tenancyDecider } from "../../../../domain/sentral/decider.ts";
import { tenancyEventSchemas } from "../../../../domain/sentral/events.ts";
import { QUOTA_RESOURCES } from "../../../../domain/sentral/limits.ts";
import type { TenantState } from "../../../../domain/sentral/state.ts";
import { T } from "./fixtures.ts";

// Small pools so that collisions (same name, same id, archived then reused) happen often.
const projectId = fc.constantFrom("p1", "p2", "p3", "p4");
const environmentId = fc.constantFrom("e1", "e2", "e3", "e4");
const name = fc.constantFrom("web", "api", "db", "Bad_Name");
const limit = fc.option(fc.integer({ min: 0, max: 8 }), { nil: null });
const limits = fc.record(
  Object.fromEntries(QUOTA_RESOURCES.slice(0, 3).map((resource) => [resource, limit])) as Record<
    "vcpus" | "memoryMiB" | "vms",
    typeof limit
  >,
  { requiredKeys: [] },
);

const command: fc.Arbitrary<TenancyCommand> = fc.oneof(
  { weight: 1, arbitrary: name.map((n) => ({ type: "CreateTenant" as const, tenantId: T, name: n })) },
  { weight: 1, arbitrary: name.map((n) => ({ type: "RenameTenant" as const, tenantId: T, name: n })) },
  { weight: 1, arbitrary: fc.constant({ type: "SuspendTenant" as const, tenantId: T, reason: "because" }) },
  { weight: 2, arbitrary: fc.constant({ type: "ResumeTenant" as const, tenantId: T }) },
  { weight: 5, arbitrary: fc.record({ projectId, name }).map((c) => ({ type: "CreateProject" as const, tenantId: T, ...c })) },
  { weight: 2, arbitrary: projectId.map((p) => ({ type: "ArchiveProject" as const, tenantId: T, projectId: p })) },
  {
    weight: 5,
    arbitrary: fc
      .record({ projectId, environmentId, name })
      .map((c) => ({ type: "CreateEnvironment" as const, tenantId: T, ...c })),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({ projectId, environmentId })
      .map((c) => ({ type: "ArchiveEnvironment" as const, tenantId: T, ...c })),
  },
  { weight: 3, arbitrary: limits.map((l) => ({ type: "SetTenantQuota" as const, tenantId: T, limits: l })) },
  {
    weight: 3,
    arbitrary: fc.record({ projectId, limits }).map((c) => ({ type: "SetProjectQuota" as const, tenantId: T, ...c })),
  },
);

function checkInvariants(state: TenantState): void {
  if (state.status === "absent") return;
  const active = [...state.projects.values()].filter((p) => !p.archived);
  const names = active.map((p) => p.name);
  expect(new Set(names).size, `two active projects share a name: ${names.join(",")}`).toBe(names.length);
  for (const project of state.projects.values()) {
    const activeEnvs = [...project.environments.values()].filter((e) => !e.archived);
    const envNames = activeEnvs.map((e) => e.name);
    expect(new Set(envNames).size, `two active environments share a name in ${project.name}`).toBe(envNames.length);
    if (project.archived) expect(activeEnvs, `archived project ${project.name} has active environments`).toEqual([]);
    if (!project.archived) {
      for (const resource of QUOTA_RESOURCES) {
        const tenantLimit = state.limits[resource];
        const projectLimit = project.limits[resource];
        if (tenantLimit !== undefined && projectLimit !== undefined) expect(projectLimit).toBeLessThanOrEqual(tenantLimit);
      }
    }
  }
  const envIds = [...state.projects.values()].flatMap((p) => [...p.environments.keys()]);
  expect(new Set(envIds).size).toBe(envIds.length);
}

describe("tenancy decider properties", () => {
  it("any sequence of commands keeps the invariants, emits only valid events, and is idempotent", () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 60 }), (commands) => {
        let state = tenancyDecider.initialState;
        // Mostly start from an existing tenant, or few sequences would get past tenant_not_found.
        for (const c of [{ type: "CreateTenant" as const, tenantId: T, name: "acme" }, ...commands]) {
          const outcome = tenancyDecider.decide(c, state);
          if (outcome instanceof DomainError) continue;
          for (const event of outcome) {
            // What the decider emits must be readable with the published schema.
            const parsed = tenancyEventSchemas[event.type].schema.safeParse(event.data);
            expect(parsed.success, `${event.type} does not match its schema`).toBe(true);
            state = tenancyDecider.evolve(state, event);
          }
          checkInvariants(state);
          // Its effect holds now, so the same command again must emit nothing.
          expect(tenancyDecider.decide(c, state)).toEqual([]);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("a suspended tenant's state changes only by RenameTenant or ResumeTenant", () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 40 }), command, (setup, probe) => {
        let state = tenancyDecider.initialState;
        for (const c of [{ type: "CreateTenant" as const, tenantId: T, name: "acme" }, ...setup]) {
          const outcome = tenancyDecider.decide(c, state);
          if (!(outcome instanceof DomainError)) for (const event of outcome) state = tenancyDecider.evolve(state, event);
        }
        fc.pre(state.status === "suspended");
        const outcome = tenancyDecider.decide(probe, state);
        if (outcome instanceof DomainError || outcome.length === 0) return;
        expect(["RenameTenant", "ResumeTenant"]).toContain(probe.type);
      }),
      { numRuns: 300 },
    );
  });
});
