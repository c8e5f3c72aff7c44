import { describe, expect, it } from "vitest";
import { DomainError } from "../../../../domain/shared/errors.ts";
import { tenancyDecider } from "../../../../domain/sentral/decider.ts";
import { fold } from "../../../../domain/shared/decider.ts";
import {
  T,
  P1,
  E1,
  environmentCreated,
  projectCreated,
  spec,
  tenantCreated,
  tenantRenamed,
  tenantResumed,
  tenantSuspended,
} from "./fixtures.ts";

describe("CreateTenant", () => {
  it("creates a tenant that does not exist", () => {
    const { state } = spec
      .given([])
      .when({ type: "CreateTenant", tenantId: T, name: "acme", displayName: "ACME Corp" })
      .then([tenantCreated("acme", "ACME Corp")]);
    expect(state).toMatchObject({ status: "active", tenantId: T, name: "acme", displayName: "ACME Corp" });
  });

  it("records an absent display name as null", () => {
    spec.given([]).when({ type: "CreateTenant", tenantId: T, name: "acme" }).then([tenantCreated("acme", null)]);
  });

  it("is a no-op when repeated with the same content (a retry)", () => {
    spec.given([tenantCreated("acme", "ACME")]).when({ type: "CreateTenant", tenantId: T, name: "acme", displayName: "ACME" }).thenNothing();
  });

  it("is a no-op when repeated for a suspended tenant too (answered by existence alone)", () => {
    spec.given([tenantCreated(), tenantSuspended()]).when({ type: "CreateTenant", tenantId: T, name: "acme" }).thenNothing();
  });

  it("refuses an existing tenant id with a different name", () => {
    spec
      .given([tenantCreated("acme")])
      .when({ type: "CreateTenant", tenantId: T, name: "other" })
      .thenFails("tenant_exists", { tenantId: T, name: "acme" });
  });

  it("refuses an existing tenant id with a different display name", () => {
    spec.given([tenantCreated("acme", "A")]).when({ type: "CreateTenant", tenantId: T, name: "acme", displayName: "B" }).thenFails("tenant_exists");
  });

  it("refuses a name that is not a DNS label (domain rule, even unparsed)", () => {
    spec.given([]).when({ type: "CreateTenant", tenantId: T, name: "Acme_Corp" }).thenFails("invalid_name", { kind: "tenant" });
  });
});

describe("RenameTenant", () => {
  it("renames and keeps the display name when none is sent", () => {
    const { state } = spec
      .given([tenantCreated("acme", "ACME")])
      .when({ type: "RenameTenant", tenantId: T, name: "acme-corp" })
      .then([tenantRenamed("acme-corp", "ACME")]);
    expect(state).toMatchObject({ name: "acme-corp", displayName: "ACME" });
  });

  it("sets a new display name", () => {
    spec.given([tenantCreated("acme", "ACME")]).when({ type: "RenameTenant", tenantId: T, name: "acme", displayName: "Acme AS" }).then([tenantRenamed("acme", "Acme AS")]);
  });

  it("clears the display name with null", () => {
    spec.given([tenantCreated("acme", "ACME")]).when({ type: "RenameTenant", tenantId: T, name: "acme", displayName: null }).then([tenantRenamed("acme", null)]);
  });

  it("is a no-op when name and display name are already so", () => {
    spec.given([tenantCreated("acme", "ACME")]).when({ type: "RenameTenant", tenantId: T, name: "acme" }).thenNothing();
  });

  it("is allowed while suspended (a rename is the usual remedy of a name dispute)", () => {
    spec.given([tenantCreated("acme"), tenantSuspended("trademark dispute")]).when({ type: "RenameTenant", tenantId: T, name: "acme2" }).then([tenantRenamed("acme2", null)]);
  });

  it("refuses an unknown tenant", () => {
    spec.given([]).when({ type: "RenameTenant", tenantId: T, name: "acme" }).thenFails("tenant_not_found", { tenantId: T });
  });

  it("refuses a bad name", () => {
    spec.given([tenantCreated()]).when({ type: "RenameTenant", tenantId: T, name: "-acme" }).thenFails("invalid_name");
  });
});

describe("SuspendTenant", () => {
  it("suspends an active tenant with its reason", () => {
    const { state } = spec.given([tenantCreated()]).when({ type: "SuspendTenant", tenantId: T, reason: "unpaid invoices" }).then([tenantSuspended("unpaid invoices")]);
    expect(state).toMatchObject({ status: "suspended", suspendedReason: "unpaid invoices" });
  });

  it("is a no-op on a suspended tenant, whatever the reason (the first reason stands)", () => {
    spec.given([tenantCreated(), tenantSuspended("one")]).when({ type: "SuspendTenant", tenantId: T, reason: "two" }).thenNothing();
  });

  it("refuses an unknown tenant", () => {
    spec.given([]).when({ type: "SuspendTenant", tenantId: T, reason: "x" }).thenFails("tenant_not_found");
  });
});

describe("ResumeTenant", () => {
  it("resumes a suspended tenant", () => {
    const { state } = spec.given([tenantCreated(), tenantSuspended()]).when({ type: "ResumeTenant", tenantId: T }).then([tenantResumed()]);
    expect(state).toMatchObject({ status: "active", suspendedReason: null });
  });

  it("is a no-op on an active tenant", () => {
    spec.given([tenantCreated()]).when({ type: "ResumeTenant", tenantId: T }).thenNothing();
    spec.given([tenantCreated(), tenantSuspended(), tenantResumed()]).when({ type: "ResumeTenant", tenantId: T }).thenNothing();
  });

  it("refuses an unknown tenant", () => {
    spec.given([]).when({ type: "ResumeTenant", tenantId: T }).thenFails("tenant_not_found");
  });
});

describe("a suspended tenant", () => {
  const suspended = [tenantCreated(), projectCreated(), environmentCreated(), tenantSuspended("abuse")];
  const refused = [
    { type: "CreateProject", tenantId: T, projectId: "p-new", name: "api" },
    { type: "ArchiveProject", tenantId: T, projectId: P1 },
    { type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: "e-new", name: "dev" },
    { type: "ArchiveEnvironment", tenantId: T, projectId: P1, environmentId: E1 },
    { type: "SetTenantQuota", tenantId: T, limits: { vcpus: 8 } },
    { type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vcpus: 8 } },
  ] as const;

  it.each(refused)("refuses $type with tenant_suspended and the reason", (command) => {
    spec.given(suspended).when(command).thenFails("tenant_suspended", { tenantId: T, reason: "abuse" });
  });

  it("accepts the same commands again once resumed", () => {
    const resumed = [...suspended, tenantResumed()];
    for (const command of refused) {
      const outcome = tenancyDecider.decide(command, fold(tenancyDecider, resumed));
      if (outcome instanceof DomainError) expect(outcome.code).not.toBe("tenant_suspended");
    }
  });
});

describe("commands before the tenant exists", () => {
  const commands = [
    { type: "CreateProject", tenantId: T, projectId: P1, name: "web" },
    { type: "ArchiveProject", tenantId: T, projectId: P1 },
    { type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E1, name: "prod" },
    { type: "ArchiveEnvironment", tenantId: T, projectId: P1, environmentId: E1 },
    { type: "SetTenantQuota", tenantId: T, limits: { vcpus: 8 } },
    { type: "SetProjectQuota", tenantId: T, projectId: P1, limits: { vcpus: 8 } },
  ] as const;

  it.each(commands)("$type is refused with tenant_not_found", (command) => {
    spec.given([]).when(command).thenFails("tenant_not_found", { tenantId: T });
  });
});

describe("evolve", () => {
  it("refuses a history that could not have happened (corrupt stream)", () => {
    expect(() => fold(tenancyDecider, [projectCreated()])).toThrow(/before TenantCreated/);
    expect(() => fold(tenancyDecider, [tenantCreated(), environmentCreated()])).toThrow(/unknown project/);
  });

  it("never mutates the state it is given", () => {
    const before = fold(tenancyDecider, [tenantCreated(), projectCreated()]);
    const snapshot = structuredClone(before);
    tenancyDecider.evolve(before, environmentCreated());
    tenancyDecider.evolve(before, tenantSuspended());
    expect(before).toEqual(snapshot);
  });
});
