import { beforeEach, describe, expect, it } from "vitest";
import { validate as isUuid, version as uuidVersion } from "uuid";
import { ConcurrencyError } from "../../../adapters/eventstore/errors.ts";
import type { NewEvent } from "../../../adapters/eventstore/port.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import { tenantStreamId } from "../../../domain/sentral/stream.ts";
import {
  CommandScopeError,
  CommandValidationError,
  EventDecodingError,
  type CommandContext,
} from "../../../commands/index.ts";
import { executeTenancyCommand } from "../../../commands/sentral/tenancy.ts";
import { InMemoryEventStore } from "../../support/in-memory-event-store.ts";

const T = "0190d6a8-0000-7000-8000-000000000001";
const P1 = "0190d6a8-0000-7000-8000-0000000000a1";
const P2 = "0190d6a8-0000-7000-8000-0000000000a2";
const stream = tenantStreamId(T);

const context: CommandContext = {
  actor: { kind: "user", id: "ada@example.org" },
  correlationId: "corr-1",
  scope: { tenantId: T },
};

const noSleep = { sleep: async () => {} };

let store: InMemoryEventStore;
beforeEach(() => {
  store = new InMemoryEventStore();
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

async function createTenant(): Promise<void> {
  await executeTenancyCommand(store, { type: "CreateTenant", tenantId: T, name: "acme" }, context);
}

/** Appends a competing ProjectCreated straight to the store, as another writer would. */
async function competingWrite(name: string, projectId: string): Promise<void> {
  const current = await store.readStream(stream);
  await store.append(
    stream,
    [
      {
        type: "ProjectCreated",
        schemaVersion: 1,
        data: { tenantId: T, projectId, name, description: null },
        actor: { kind: "user", id: "someone-else" },
        scope: { tenantId: T, projectId },
      },
    ],
    { expectedVersion: current.length - 1 },
  );
}

describe("validation", () => {
  it("lists every failing field and reads and appends nothing", async () => {
    const error = await rejection(
      executeTenancyCommand(store, { type: "CreateEnvironment", tenantId: "", projectId: P1, name: "Prod_1", colour: "red" }, context),
    );
    expect(error).toBeInstanceOf(CommandValidationError);
    const issues = (error as CommandValidationError).issues;
    expect(issues.map((issue) => issue.path).sort()).toEqual(["colour", "environmentId", "name", "tenantId"]);
    expect(issues.find((issue) => issue.path === "colour")).toEqual({ path: "colour", message: "unknown field", code: "unrecognized_keys" });
    expect(issues.every((issue) => issue.message.length > 0 && issue.code.length > 0)).toBe(true);
    expect(store.calls).toEqual({ append: 0, readStream: 0, conflicts: 0 });
  });

  it("reports nested quota fields by path", async () => {
    const error = await rejection(
      executeTenancyCommand(store, { type: "SetTenantQuota", tenantId: T, limits: { vcpus: -1, vms: "ten" } }, context),
    );
    expect((error as CommandValidationError).issues.map((issue) => issue.path).sort()).toEqual(["limits.vcpus", "limits.vms"]);
  });

  it("refuses input that is not a command at all", async () => {
    for (const input of [null, "CreateTenant", { type: "DropTables" }, {}]) {
      const error = await rejection(executeTenancyCommand(store, input, context));
      expect(error).toBeInstanceOf(CommandValidationError);
    }
    expect(store.calls.append).toBe(0);
  });
});

describe("deciding and appending", () => {
  it("appends the decided events with UUIDv7 ids and the envelope from the context", async () => {
    const occurredAt = new Date("2030-01-02T03:04:05Z");
    const result = await executeTenancyCommand(
      store,
      { type: "CreateTenant", tenantId: T, name: "acme", displayName: "ACME" },
      { ...context, causationId: "cause-9", datacenter: "osl1", occurredAt },
    );
    expect(result).toMatchObject({ streamId: stream, version: 0, attempts: 1 });
    expect(result.position).toEqual({ transactionId: 1n, globalPosition: 1n });
    expect(result.events).toHaveLength(1);
    const [event] = result.events;
    expect(event).toMatchObject({
      type: "TenantCreated",
      schemaVersion: 1,
      data: { tenantId: T, name: "acme", displayName: "ACME" },
      streamPosition: 0,
      globalPosition: 1n,
    });
    expect(isUuid(event!.id) && uuidVersion(event!.id)).toBe(7);

    const [stored] = await store.readStream(stream);
    expect(stored).toMatchObject({
      id: event!.id,
      type: "TenantCreated",
      schemaVersion: 1,
      actor: context.actor,
      correlationId: "corr-1",
      causationId: "cause-9",
      scope: { tenantId: T },
      datacenter: "osl1",
      occurredAt,
    });
  });

  it("files events under the tenant, project and environment the command names", async () => {
    await createTenant();
    await executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context);
    await executeTenancyCommand(store, { type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: "e1", name: "prod" }, context);
    const scopes = (await store.readStream(stream)).map((event) => event.scope);
    expect(scopes).toEqual([{ tenantId: T }, { tenantId: T, projectId: P1 }, { tenantId: T, projectId: P1, environmentId: "e1" }]);
  });

  it("continues a stream at the version it loaded", async () => {
    await createTenant();
    const result = await executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context);
    expect(result).toMatchObject({ version: 1, events: [{ type: "ProjectCreated", streamPosition: 1 }] });
  });

  it("a domain rejection throws the DomainError and appends nothing", async () => {
    const notFound = await rejection(executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context));
    expect(notFound).toBeInstanceOf(DomainError);
    expect((notFound as DomainError).code).toBe("tenant_not_found");

    await createTenant();
    await executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context);
    const appendsBefore = store.calls.append;
    const taken = await rejection(executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P2, name: "web" }, context));
    expect((taken as DomainError).code).toBe("project_name_taken");
    expect(store.calls.append).toBe(appendsBefore);
    expect(await store.readStream(stream)).toHaveLength(2);
  });

  it("a command whose effect holds appends nothing and returns the current version and position", async () => {
    await createTenant();
    const created = await executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context);
    const appendsBefore = store.calls.append;
    const again = await executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context);
    expect(again).toEqual({ streamId: stream, version: 1, position: created.position, events: [], attempts: 1 });
    expect(store.calls.append).toBe(appendsBefore);
  });
});

describe("optimistic concurrency", () => {
  it("retries an unpinned command that lost a race and re-decides it: same name -> exactly one wins", async () => {
    await createTenant();
    const outcomes = await Promise.allSettled([
      executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context),
      executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P2, name: "web" }, context),
    ]);
    expect(store.calls.conflicts).toBeGreaterThanOrEqual(1); // the race really happened
    const won = outcomes.filter((outcome) => outcome.status === "fulfilled");
    const lost = outcomes.filter((outcome) => outcome.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0]!.reason as DomainError).code).toBe("project_name_taken");
    const created = (await store.readStream(stream)).filter((event) => event.type === "ProjectCreated");
    expect(created).toHaveLength(1);
  });

  it("a retried command that still holds succeeds on the next attempt", async () => {
    await createTenant();
    let raced = false;
    store.beforeAppend = async () => {
      if (raced) return;
      raced = true;
      await competingWrite("api", P2);
    };
    const result = await executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context, noSleep);
    expect(result).toMatchObject({ attempts: 2, version: 2, events: [{ type: "ProjectCreated", streamPosition: 2 }] });
    expect(store.calls.conflicts).toBe(1);
  });

  it("gives up after the bounded number of retries, with jittered backoff in between", async () => {
    await createTenant();
    let n = 0;
    let writing = false;
    store.beforeAppend = async () => {
      if (writing) return;
      writing = true;
      await competingWrite(`other-${n}`, `p-other-${n++}`);
      writing = false;
    };
    const delays: number[] = [];
    const error = await rejection(
      executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context, {
        maxRetries: 3,
        baseDelayMs: 10,
        maxDelayMs: 25,
        random: () => 0.99,
        sleep: async (ms) => void delays.push(ms),
      }),
    );
    expect(error).toBeInstanceOf(ConcurrencyError);
    expect(store.calls.conflicts).toBe(4); // first attempt + 3 retries
    expect(delays).toHaveLength(3);
    expect(delays[0]).toBeCloseTo(9.9);
    expect(delays[1]).toBeCloseTo(19.8);
    expect(delays[2]).toBeCloseTo(24.75); // capped by maxDelayMs
    expect((await store.readStream(stream)).some((event) => (event.data as { projectId?: string }).projectId === P1)).toBe(false);
  });

  it("a pinned expectedVersion that is stale surfaces ConcurrencyError without deciding or appending", async () => {
    await createTenant();
    await executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, context);
    const appendsBefore = store.calls.append;
    const error = await rejection(
      executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P2, name: "api" }, { ...context, expectedVersion: 0 }),
    );
    expect(error).toBeInstanceOf(ConcurrencyError);
    expect(error).toMatchObject({ streamId: stream, expected: 0, actual: 1 });
    expect(store.calls.append).toBe(appendsBefore);
  });

  it("a pinned expectedVersion that loses a race after loading surfaces ConcurrencyError and is not retried", async () => {
    await createTenant();
    let raced = false;
    store.beforeAppend = async (_streamId: string, events: readonly NewEvent[]) => {
      if (raced || events[0]?.actor.id !== context.actor.id) return;
      raced = true;
      await competingWrite("api", P2);
    };
    const error = await rejection(
      executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, { ...context, expectedVersion: 0 }, noSleep),
    );
    expect(error).toBeInstanceOf(ConcurrencyError);
    expect(store.calls.conflicts).toBe(1);
    expect((await store.readStream(stream)).map((event) => event.type)).toEqual(["TenantCreated", "ProjectCreated"]);
  });

  it("a pinned expectedVersion that matches goes through", async () => {
    const created = await executeTenancyCommand(store, { type: "CreateTenant", tenantId: T, name: "acme" }, { ...context, expectedVersion: "no_stream" });
    expect(created.version).toBe(0);
    const project = await executeTenancyCommand(store, { type: "CreateProject", tenantId: T, projectId: P1, name: "web" }, { ...context, expectedVersion: 0 });
    expect(project.version).toBe(1);
  });
});

describe("scope", () => {
  it("refuses a command about another tenant than the caller's", async () => {
    const error = await rejection(
      executeTenancyCommand(store, { type: "CreateTenant", tenantId: T, name: "acme" }, { ...context, scope: { tenantId: "someone-else" } }),
    );
    expect(error).toBeInstanceOf(CommandScopeError);
    expect(error).toMatchObject({ field: "tenantId", commandValue: T, contextValue: "someone-else" });
    expect(store.calls.readStream).toBe(0);
  });

  it("refuses a command about another project than the caller's project scope", async () => {
    await createTenant();
    const error = await rejection(
      executeTenancyCommand(store, { type: "ArchiveProject", tenantId: T, projectId: P2 }, { ...context, scope: { tenantId: T, projectId: P1 } }),
    );
    expect(error).toMatchObject({ name: "CommandScopeError", field: "projectId" });
  });

  it("lets the platform scope act on any tenant, filing events under the tenant", async () => {
    await executeTenancyCommand(store, { type: "CreateTenant", tenantId: T, name: "acme" }, { ...context, scope: { tenantId: "platform" } });
    const [event] = await store.readStream(stream);
    expect(event!.scope).toEqual({ tenantId: T });
  });
});

describe("loading", () => {
  async function seedRaw(type: string, data: unknown, schemaVersion = 1): Promise<void> {
    await store.append(stream, [{ type, schemaVersion, data, actor: context.actor, scope: { tenantId: T } }], { expectedVersion: "any" });
  }

  it("refuses a stream holding an event type it does not know", async () => {
    await seedRaw("TenantCreated", { tenantId: T, name: "acme", displayName: null });
    await seedRaw("TenantTeleported", { tenantId: T });
    const error = await rejection(executeTenancyCommand(store, { type: "ResumeTenant", tenantId: T }, context));
    expect(error).toBeInstanceOf(EventDecodingError);
    expect(error).toMatchObject({ reason: "unknown_type", eventType: "TenantTeleported", streamPosition: 1 });
  });

  it("refuses an event whose data does not match its schema", async () => {
    await seedRaw("TenantCreated", { tenantId: T, name: "NOT A LABEL", displayName: null });
    const error = await rejection(executeTenancyCommand(store, { type: "ResumeTenant", tenantId: T }, context));
    expect(error).toMatchObject({ name: "EventDecodingError", reason: "invalid_data" });
  });

  it("refuses an event at a schema version no upcaster brought to the current one", async () => {
    await seedRaw("TenantCreated", { tenantId: T, name: "acme", displayName: null }, 2);
    const error = await rejection(executeTenancyCommand(store, { type: "ResumeTenant", tenantId: T }, context));
    expect(error).toMatchObject({ name: "EventDecodingError", reason: "unsupported_schema_version" });
  });

  it("reads streams longer than one page", async () => {
    await createTenant();
    for (let i = 0; i < 1_005; i++) {
      const type = i % 2 === 0 ? "SuspendTenant" : "ResumeTenant";
      await executeTenancyCommand(store, { type, tenantId: T, ...(type === "SuspendTenant" ? { reason: "r" } : {}) }, context);
    }
    const result = await executeTenancyCommand(store, { type: "SuspendTenant", tenantId: T, reason: "r" }, context);
    // 1 + 1005 events: the last one was SuspendTenant (i = 1004), so suspending again is a no-op at version 1005.
    expect(result).toMatchObject({ version: 1_005, events: [] });
  });
});
