import { describe, expect, it } from "vitest";
import { TENANCY_COMMAND_TYPES } from "../../../../domain/sentral/commands.ts";
import { tenantStreamId } from "../../../../domain/sentral/stream.ts";
import { executeTenancyCommand, tenancyCommands, tenantHandler } from "../../../../commands/sentral/tenancy.ts";
import { InMemoryEventStore } from "../../../support/in-memory-event-store.ts";

const T = "t-1";
const context = { actor: { kind: "service" as const, id: "test" }, correlationId: "c-1" };

describe("tenancy command handlers", () => {
  it("map every tenancy command type to the tenant aggregate's handler", () => {
    expect(Object.keys(tenancyCommands).sort()).toEqual([...TENANCY_COMMAND_TYPES].sort());
    for (const type of TENANCY_COMMAND_TYPES) expect(tenancyCommands[type]).toBe(tenantHandler);
  });

  it("run every command type through the pipeline into the tenant stream", async () => {
    const store = new InMemoryEventStore();
    const script = [
      { type: "CreateTenant", tenantId: T, name: "acme" },
      { type: "RenameTenant", tenantId: T, name: "acme-as", displayName: "Acme AS" },
      { type: "SetTenantQuota", tenantId: T, limits: { vcpus: 64 } },
      { type: "CreateProject", tenantId: T, projectId: "p1", name: "web", description: "site" },
      { type: "SetProjectQuota", tenantId: T, projectId: "p1", limits: { vcpus: 32 } },
      { type: "CreateEnvironment", tenantId: T, projectId: "p1", environmentId: "e1", name: "prod" },
      { type: "ArchiveEnvironment", tenantId: T, projectId: "p1", environmentId: "e1" },
      { type: "ArchiveProject", tenantId: T, projectId: "p1" },
      { type: "SuspendTenant", tenantId: T, reason: "audit" },
      { type: "ResumeTenant", tenantId: T },
    ];
    for (const command of script) await executeTenancyCommand(store, command, context);
    const events = await store.readStream(tenantStreamId(T));
    expect(events.map((event) => event.type)).toEqual([
      "TenantCreated",
      "TenantRenamed",
      "TenantQuotaSet",
      "ProjectCreated",
      "ProjectQuotaSet",
      "EnvironmentCreated",
      "EnvironmentArchived",
      "ProjectArchived",
      "TenantSuspended",
      "TenantResumed",
    ]);
    expect(events.every((event) => (event.data as { tenantId: string }).tenantId === T)).toBe(true);
  });
});
