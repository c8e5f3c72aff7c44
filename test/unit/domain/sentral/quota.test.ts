import { describe, expect, it } from "vitest";
import { P1, P2, T, projectArchived, projectCreated, projectQuotaSet, spec, tenantCreated, tenantQuotaSet } from "./fixtures.ts";

const base = [tenantCreated(), projectCreated(P1, "web"), projectCreated(P2, "api")];

describe("SetTenantQuota", () => {
  it("sets limits and records only what changed", () => {
    const { state } = spec
      .given([...base, tenantQuotaSet({ vcpus: 64 })])
      .when({ type: "SetTenantQuota", tenantId: T, limits: { vcpus: 64, memoryMiB: 131072, vms: 20 } })
      .then([tenantQuotaSet({ memoryMiB: 131072, vms: 20 })]);
    expect(state.status !== "absent" && state.limits).toEqual({ vcpus: 64, memoryMiB: 131072, vms: 20 });
  });

  it("clears a limit with null", () => {
    const { state } = spec
      .given([...base, tenantQuotaSet({ vcpus: 64, vms: 5 })])
      .when({ type: "SetTenantQuota", tenantId: T, limits: { vcpus: null } })
      .then([tenantQuotaSet({ vcpus: null })]);
    expect(state.status !== "absent" && state.limits).toEqual({ vms: 5 });
  });

  it("is a no-op when the limits are already in effect (or the patch is empty)", () => {
    const given = [...base, tenantQuotaSet({ vcpus: 64 })];
    spec.given(given).when({ type: "SetTenantQuota", tenantId: T, limits: { vcpus: 64 } }).thenNothing();
    spec.given(given).when({ type: "SetTenantQuota", tenantId: T, limits: { hosts: null } }).thenNothing();
    spec.given(given).when({ type: "SetTenantQuota", tenantId: T, limits: {} }).thenNothing();
  });

  it("allows zero", () => {
    spec.given(base).when({ type: "SetTenantQuota", tenantId: T, limits: { hosts: 0 } }).then([tenantQuotaSet({ hosts: 0 })]);
  });

  it("refuses a limit below an active project's limit, naming each project", () => {
    const error = spec
      .given([...base, projectQuotaSet({ vcpus: 16 }, P1), projectQuotaSet({ vcpus: 32, vms: 4 }, P2)])
      .when({ type: "SetTenantQuota", tenantId: T, limits: { vcpus: 20, vms: 10 } })
      .thenFails("quota_below_project_limit");
    expect(error.details["violations"]).toEqual([
      { projectId: P2, projectName: "api", resource: "vcpus", projectLimit: 32, tenantLimit: 20 },
    ]);
    expect(error.message).toContain("api");
  });

  it("ignores archived projects' limits", () => {
    spec
      .given([...base, projectQuotaSet({ vcpus: 32 }, P2), projectArchived(P2)])
      .when({ type: "SetTenantQuota", tenantId: T, limits: { vcpus: 8 } })
      .then([tenantQuotaSet({ vcpus: 8 })]);
  });

  it("allows a limit equal to a project's limit", () => {
    spec.given([...base, projectQuotaSet({ vcpus: 16 }, P1)]).when({ type: "SetTenantQuota", tenantId: T, limits: { vcpus: 16 } }).then([tenantQuotaSet({ vcpus: 16 })]);
  });

  it("refuses limits that are not non-negative integers (domain rule, even unparsed)", () => {
    spec.given(base).when({ type: "SetTenantQuota", tenantId: T, limits: { vcpus: -1, vms: 1.5 } }).thenFails("invalid_quota", { resources: ["vcpus", "vms"] });
  });
});

describe("SetProjectQuota", () => {
  it("sets a project's limits when the tenant has none", () => {
    const { state } = spec
      .given(base)
      .when({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vcpus: 1000, buckets: 3 } })
      .then([projectQuotaSet({ vcpus: 1000, buckets: 3 }, P1)]);
    expect(state.status !== "absent" && state.projects.get(P1)?.limits).toEqual({ vcpus: 1000, buckets: 3 });
  });

  it("allows limits up to the tenant's", () => {
    spec
      .given([...base, tenantQuotaSet({ vcpus: 16 })])
      .when({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vcpus: 16, networks: 99 } })
      .then([projectQuotaSet({ vcpus: 16, networks: 99 }, P1)]);
  });

  it("refuses a limit above the tenant's for the same resource", () => {
    spec
      .given([...base, tenantQuotaSet({ vcpus: 16, vms: 10 })])
      .when({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vcpus: 17, vms: 10 } })
      .thenFails("quota_exceeds_tenant_limit", {
        projectId: P1,
        violations: [{ resource: "vcpus", projectLimit: 17, tenantLimit: 16 }],
      });
  });

  it("clears a project limit with null", () => {
    spec.given([...base, projectQuotaSet({ vms: 3 }, P1)]).when({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vms: null } }).then([projectQuotaSet({ vms: null }, P1)]);
  });

  it("is a no-op when the limits are already in effect", () => {
    spec.given([...base, projectQuotaSet({ vms: 3 }, P1)]).when({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vms: 3 } }).thenNothing();
  });

  it("refuses an archived project, even with identical limits", () => {
    spec
      .given([...base, projectQuotaSet({ vms: 3 }, P1), projectArchived(P1)])
      .when({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vms: 3 } })
      .thenFails("project_archived", { projectId: P1 });
  });

  it("refuses an unknown project", () => {
    spec.given(base).when({ type: "SetProjectQuota", tenantId: T, projectId: "nope", limits: { vms: 3 } }).thenFails("project_not_found");
  });

  it("refuses bad limits", () => {
    spec.given(base).when({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { hosts: Number.NaN } }).thenFails("invalid_quota");
  });
});
