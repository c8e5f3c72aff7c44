import { describe, expect, it } from "vitest";
import { TenancyCommandSchema, TENANCY_COMMAND_TYPES } from "../../../../domain/sentral/commands.ts";
import { T, P1 } from "./fixtures.ts";

function failingPaths(input: unknown): string[] {
  const result = TenancyCommandSchema.safeParse(input);
  if (result.success) return [];
  return result.error.issues.map((issue) => issue.path.join("."));
}

describe("tenancy command schemas", () => {
  it("lists every command type in TENANCY_COMMAND_TYPES", () => {
    expect([...TENANCY_COMMAND_TYPES].sort()).toEqual(TenancyCommandSchema.options.map((o) => o.shape.type.value).sort());
  });

  it("parses a valid command", () => {
    expect(TenancyCommandSchema.parse({ type: "CreateProject", tenantId: T, projectId: P1, name: "web" })).toEqual({
      type: "CreateProject",
      tenantId: T,
      projectId: P1,
      name: "web",
    });
  });

  it("reports every failing field at once", () => {
    expect(failingPaths({ type: "CreateEnvironment", tenantId: "", projectId: P1, name: "Prod_1" }).sort()).toEqual([
      "environmentId",
      "name",
      "tenantId",
    ]);
  });

  it("refuses unknown fields and unknown quota resources", () => {
    expect(failingPaths({ type: "ResumeTenant", tenantId: T, force: true })).toEqual([""]);
    expect(failingPaths({ type: "SetTenantQuota", tenantId: T, limits: { vcpu: 4 } })).toEqual(["limits"]);
  });

  it("refuses negative, fractional and unsafe limits; accepts zero and null", () => {
    expect(failingPaths({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vcpus: -1, vms: 1.5, hosts: 2 ** 60 } }).sort()).toEqual([
      "limits.hosts",
      "limits.vcpus",
      "limits.vms",
    ]);
    expect(failingPaths({ type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vcpus: 0, vms: null } })).toEqual([]);
  });

  it("refuses an unknown command type", () => {
    expect(failingPaths({ type: "DeleteTenant", tenantId: T })).toEqual(["type"]);
  });

  it("requires a non-blank suspension reason", () => {
    expect(failingPaths({ type: "SuspendTenant", tenantId: T, reason: "   " })).toEqual(["reason"]);
  });
});
