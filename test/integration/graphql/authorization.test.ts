import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildClientSchema, getIntrospectionQuery, type IntrospectionQuery } from "graphql";
import { v7 as uuidv7 } from "uuid";
import { environmentGlobalId, fromGlobalId, projectGlobalId, tenantGlobalId, toGlobalId } from "../../../api/graphql/ids.ts";
import { tenantStreamId } from "../../../domain/sentral/stream.ts";
import { taskGlobalId } from "../../../api/graphql/ids.ts";
import { TaskDriver } from "../tasks/support.ts";
import { actorHeader } from "../api/support/test-auth.ts";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { executeVmCommand } from "../../../commands/maskin/vm/index.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import { Collected } from "./support/collect.ts";
import { actors, createGraphqlHarness, type GraphqlHarness, type TestActor } from "./support/harness.ts";
import { CREATE_ENVIRONMENT, CREATE_PROJECT, CREATE_TENANT, must, SET_PROJECT_QUOTA } from "./support/seed.ts";

/**
 * Every root field of the served schema x every kind of caller -> the outcome
 * it must get: the GraphQL half of the authorization matrix (the REST half is
 * test/integration/api/authorization.test.ts, and the rules are the same).
 * A root field without a row here fails the test, so adding a query, mutation
 * or subscription means deciding who may call it.
 *
 * The world: tenant A (projects P1 with environment E1, and P2) and tenant B
 * (project Q1). Callers: anonymous, B's tenant-admin ("other"), A's
 * tenant-admin ("owner"), a project-member of A/P1, an auditor of A, a
 * platform-admin.
 */
type Caller = "anonymous" | "other" | "owner" | "member" | "auditor" | "platform";
const CALLERS: readonly Caller[] = ["anonymous", "other", "owner", "member", "auditor", "platform"];

/**
 * - UNAUTHENTICATED: a top-level error and no data (every operation needs an actor);
 * - data: a query answers the object (a list: exactly the ids `sees` names); a
 *   subscription is accepted and delivers exactly the writes `sees` names;
 * - null: a query answers null, exactly as for an id that does not exist;
 * - Payload / NotFound / Forbidden / Conflict: the member of a mutation's result union;
 * - NOT_FOUND / FORBIDDEN: a subscription is refused with that code.
 */
type Outcome = "UNAUTHENTICATED" | "data" | "null" | "Payload" | "NotFound" | "Forbidden" | "Conflict" | "NOT_FOUND" | "FORBIDDEN";

interface World {
  readonly a: string;
  readonly b: string;
  readonly p1: string;
  readonly p2: string;
  readonly q1: string;
  readonly e1: string;
  /** Global ids. */
  readonly g: { readonly a: string; readonly b: string; readonly p1: string; readonly p2: string; readonly e1: string };
  /** Running tasks (resource type "world") in B/Q1, A/P2 and A/P1: their ids. */
  readonly tasks: { readonly q1: string; readonly p2: string; readonly p1: string };
}

interface Operation {
  /** The root field is always aliased `r`. */
  readonly query: string;
  readonly variables: Record<string, unknown>;
}

/** The writes a subscription row is checked against: a project quota change in B/Q1, in A/P2 and in A/P1. */
type Write = "q1" | "p2" | "p1" | "tq1" | "tp2" | "tp1" | "h1" | "vq1" | "vp2" | "vp1";
const WRITES: readonly Write[] = ["q1", "p2", "p1"];
/** Progress of the world's tasks in B/Q1, A/P2 and A/P1 (the taskUpdated rows' writes). */
const TASK_WRITES: readonly Write[] = ["tq1", "tp2", "tp1"];

type Field = `${"Query" | "Mutation" | "Subscription"}.${string}`;

interface Row {
  readonly field: Field;
  /** Which use of the field this row makes (several rows may share a field). */
  readonly label?: string;
  /** The concrete operation; may prepare fresh resources (as platform-admin) first. */
  request(world: World, h: MatrixHarness): Promise<Operation>;
  readonly expect: Readonly<Record<Caller, Outcome>>;
  /** Queries: the ids `pick` finds in the answer, exactly. Subscriptions: the writes delivered, exactly, in order. */
  readonly sees?: (world: World) => Partial<Record<Caller, readonly (string | null)[]>>;
  /** Where the ids of a query's answer are; default: a connection's nodes. */
  readonly pick?: (result: any) => readonly (string | null)[];
  /** The id the caller may not see, to swap for a missing one in the leak check; default: see hiddenId. */
  readonly hides?: (world: World) => Partial<Record<Caller, string>>;
  /** Undoes what a call changed, so rows stay independent. */
  readonly after?: (world: World, h: MatrixHarness, operation: Operation) => Promise<unknown>;
  /** Subscriptions: the writes the row makes (default WRITES). */
  readonly writes?: readonly Write[];
}

const all = (outcome: Outcome): Record<Caller, Outcome> => ({ anonymous: outcome, other: outcome, owner: outcome, member: outcome, auditor: outcome, platform: outcome });
/** Everyone who can see tenant A reads it; B's admin reads null. */
const readsA = (): Record<Caller, Outcome> => ({ anonymous: "UNAUTHENTICATED", other: "null", owner: "data", member: "data", auditor: "data", platform: "data" });
/** Like readsA, but P2 (or a project other than P1) is invisible to the member too. */
const readsSibling = (): Record<Caller, Outcome> => ({ ...readsA(), member: "null" });
const unique = () => `n-${uuidv7().slice(-12)}`;
let counter = 0;
/** A fresh value each call, so every quota write really changes something (no limit in this world caps memory). */
const fresh = () => 1_000 + ++counter;
const op = (query: string, variables: (w: World) => Record<string, unknown> = () => ({})) => async (w: World): Promise<Operation> => ({ query, variables: variables(w) });
const nodeIds = (result: any): (string | null)[] => result.nodes.map((node: any) => node?.id ?? null);

/** Every member of every result union, so a row sees whichever came back. */
const OUTCOME = `__typename
  ... on MutationError { code message }
  ... on NotFound { resource resourceId }
  ... on Conflict { details }
  ... on Rejected { details }
  ... on Accepted { position }`;
const mutation = (name: string, inputType: string, payload: string) =>
  `mutation($input: ${inputType}!) { r: ${name}(input: $input) { ${OUTCOME} ... on ${payload} { changed } } }`;
const M = {
  createTenant: mutation("createTenant", "CreateTenantInput", "TenantPayload"),
  renameTenant: mutation("renameTenant", "RenameTenantInput", "TenantPayload"),
  suspendTenant: mutation("suspendTenant", "SuspendTenantInput", "TenantPayload"),
  resumeTenant: mutation("resumeTenant", "ResumeTenantInput", "TenantPayload"),
  createProject: mutation("createProject", "CreateProjectInput", "ProjectPayload"),
  archiveProject: mutation("archiveProject", "ArchiveProjectInput", "ProjectPayload"),
  createEnvironment: mutation("createEnvironment", "CreateEnvironmentInput", "EnvironmentPayload"),
  archiveEnvironment: mutation("archiveEnvironment", "ArchiveEnvironmentInput", "EnvironmentPayload"),
  setTenantQuota: mutation("setTenantQuota", "SetTenantQuotaInput", "TenantQuotaPayload"),
  setProjectQuota: mutation("setProjectQuota", "SetProjectQuotaInput", "ProjectQuotaPayload"),
};
const input = (variables: (w: World) => Record<string, unknown>) => (w: World) => ({ input: variables(w) });

const QUOTA = `quota { limits { vcpus memoryMiB vms hosts networks buckets } updatedAt }`;
const TENANT = `query($id: String!) { r: tenant(id: $id) { id tenantId name status streamVersion ${QUOTA} projects(status: ACTIVE) { nodes { id } } } }`;
const PROJECT = `query($tenantId: String!, $projectId: String!) {
  r: project(tenantId: $tenantId, projectId: $projectId) { id projectId name status ${QUOTA} tenant { tenantId } environments(status: ACTIVE) { nodes { id } } }
}`;
const ENVIRONMENT = `query($tenantId: String!, $projectId: String!, $environmentId: String!) {
  r: environment(tenantId: $tenantId, projectId: $projectId, environmentId: $environmentId) { id environmentId name status project { projectId } }
}`;
const NODE_FIELDS = `id ... on Tenant { tenantId ${QUOTA} } ... on Project { projectId ${QUOTA} } ... on Environment { environmentId }`;
const NODE = `query($id: ID!) { r: node(id: $id) { ${NODE_FIELDS} } }`;
const RESOURCE_CHANGED = `subscription($tenantId: String!, $projectId: String) {
  r: resourceChanged(tenantId: $tenantId, projectId: $projectId) { kind id tenantId projectId eventType position }
}`;
const EVENTS = `subscription($streamId: String) { r: events(streamId: $streamId) { id type streamId position scope { tenantId projectId } } }`;
const TASK_FIELDS = `id taskId status tenantId projectId position steps { name status percent message }`;
const TASK = `query($id: String!) { r: task(id: $id) { ${TASK_FIELDS} } }`;
const TASKS = `query { r: tasks(first: 100, filter: { resourceType: "world" }) { nodes { id } } }`;
const TASK_UPDATED = `subscription($id: String) { r: taskUpdated(id: $id) { ${TASK_FIELDS} } }`;
const HOST_FIELDS = `hostId name datacenter rack state stage power { desired observed drift }`;
const HOST = `query($id: String!) { r: host(id: $id) { ${HOST_FIELDS} } }`;
const HOSTS = `query { r: hosts(first: 100) { nodes { ${HOST_FIELDS} } } }`;
const DATACENTERS = `query { r: datacenters { name racks { name hosts { hostId } } } }`;
const RACKS = `query($datacenter: String!) { r: racks(datacenter: $datacenter) { name hosts { hostId power { drift } } } }`;
const HYPERVISORS = `query { r: hypervisors(first: 100) { nodes { hostId free { vcpus } } } }`;
const HYPERVISOR = `query($hostId: String!) { r: hypervisor(hostId: $hostId) { hostId cordoned } }`;
const IMAGES = `query { r: images { name versions { version source } } }`;
const DISK_IMAGES = `query { r: diskImages(first: 100) { nodes { datacenter name referencedBy { vmId } } } }`;
const VMS = `query { r: vms(first: 100) { nodes { vmId placement { outcome } drift } } }`;
const VM = `query($id: String!) { r: vm(id: $id) { vmId lifecycle } }`;
const VM_CHANGED = `subscription($tenantId: String!, $projectId: String) { r: vmChanged(tenantId: $tenantId, projectId: $projectId) { vmId eventType position } }`;
const HOST_CHANGED = `subscription($datacenter: String) { r: hostChanged(datacenter: $datacenter) { hostId eventType position } }`;
/** The one inventory host of the world (imported in beforeAll): platform inventory, visible to platform readers only. */
let matrixHostId = "";
let powerFlips = 0;
const nobodyBelowPlatform = { other: [], owner: [], member: [], auditor: [] };
const CANCEL_TASK = mutation("cancelTask", "CancelTaskInput", "TaskPayload");
const RETRY_TASK = mutation("retryTask", "RetryTaskInput", "TaskPayload");
/** A fresh task in A/P1 for a mutation row (each call must change something): running, or failed. */
async function freshTask(w: World, h: MatrixHarness, outcome: "running" | "failed"): Promise<string> {
  const task = new TaskDriver(h.db.store, `fresh-${uuidv7()}`, { tenantId: w.a, projectId: w.p1, environmentId: null });
  await task.create(["one"]);
  const last = await (outcome === "running" ? task.start("one") : task.start("one").then(() => task.fail("matrix")));
  await h.runner.waitForPosition("tasks", last.position!, 20_000);
  return task.taskId;
}

const ROWS: readonly Row[] = [
  // ---- queries ----
  {
    field: "Query.tenant",
    request: op(TENANT, (w) => ({ id: w.a })),
    expect: readsA(),
    pick: (r) => nodeIds(r.projects),
    sees: (w) => ({ owner: [w.g.p1, w.g.p2], member: [w.g.p1], auditor: [w.g.p1, w.g.p2], platform: [w.g.p1, w.g.p2] }),
  },
  {
    field: "Query.tenants",
    request: op(`{ r: tenants(first: 100) { nodes { id tenantId ${QUOTA} } } }`),
    expect: { ...all("data"), anonymous: "UNAUTHENTICATED" },
    sees: (w) => ({ other: [w.g.b], owner: [w.g.a], member: [w.g.a], auditor: [w.g.a] }),
  },
  {
    field: "Query.project",
    request: op(PROJECT, (w) => ({ tenantId: w.a, projectId: w.p1 })),
    expect: readsA(),
    pick: (r) => nodeIds(r.environments),
    sees: (w) => ({ owner: [w.g.e1], member: [w.g.e1], auditor: [w.g.e1], platform: [w.g.e1] }),
  },
  {
    field: "Query.project",
    label: "a sibling project",
    request: op(PROJECT, (w) => ({ tenantId: w.a, projectId: w.p2 })),
    expect: readsSibling(),
    pick: (r) => nodeIds(r.environments),
    // Every environment another row makes in P2 is archived again.
    sees: () => ({ owner: [], auditor: [], platform: [] }),
  },
  {
    field: "Query.projects",
    request: op(`query($tenantId: String!) { r: projects(tenantId: $tenantId, first: 100, status: ACTIVE) { nodes { id name ${QUOTA} } } }`, (w) => ({ tenantId: w.a })),
    expect: readsA(),
    sees: (w) => ({ owner: [w.g.p1, w.g.p2], member: [w.g.p1], auditor: [w.g.p1, w.g.p2], platform: [w.g.p1, w.g.p2] }),
  },
  {
    field: "Query.environment",
    request: op(ENVIRONMENT, (w) => ({ tenantId: w.a, projectId: w.p1, environmentId: w.e1 })),
    expect: readsA(),
  },
  {
    field: "Query.environment",
    label: "in a sibling project",
    request: async (w, h) => ({ query: ENVIRONMENT, variables: { tenantId: w.a, projectId: w.p2, environmentId: await h.spareEnvironment(w.p2) } }),
    expect: readsSibling(),
    after: (w, h, o) => h.archiveEnvironment(w.p2, o.variables.environmentId as string),
  },
  {
    field: "Query.environments",
    request: op(`query($tenantId: String!, $projectId: String!) { r: environments(tenantId: $tenantId, projectId: $projectId, first: 100, status: ACTIVE) { nodes { id name } } }`, (w) => ({ tenantId: w.a, projectId: w.p1 })),
    expect: readsA(),
    sees: (w) => ({ owner: [w.g.e1], member: [w.g.e1], auditor: [w.g.e1], platform: [w.g.e1] }),
  },
  {
    field: "Query.environments",
    label: "of a sibling project",
    request: op(`query($tenantId: String!, $projectId: String!) { r: environments(tenantId: $tenantId, projectId: $projectId, first: 100, status: ACTIVE) { nodes { id name } } }`, (w) => ({ tenantId: w.a, projectId: w.p2 })),
    expect: readsSibling(),
    sees: () => ({ owner: [], auditor: [], platform: [] }),
  },
  { field: "Query.node", label: "tenant A", request: op(NODE, (w) => ({ id: w.g.a })), expect: readsA() },
  { field: "Query.node", label: "project P1", request: op(NODE, (w) => ({ id: w.g.p1 })), expect: readsA() },
  { field: "Query.node", label: "project P2", request: op(NODE, (w) => ({ id: w.g.p2 })), expect: readsSibling() },
  { field: "Query.node", label: "environment E1", request: op(NODE, (w) => ({ id: w.g.e1 })), expect: readsA() },
  {
    field: "Query.nodes",
    request: op(`query($ids: [ID!]!) { r: nodes(ids: $ids) { ${NODE_FIELDS} } }`, (w) => ({ ids: [w.g.a, w.g.p1, w.g.p2, w.g.e1] })),
    expect: { ...all("data"), anonymous: "UNAUTHENTICATED" },
    pick: (r) => r.map((node: any) => node?.id ?? null),
    sees: (w) => {
      const everything = [w.g.a, w.g.p1, w.g.p2, w.g.e1];
      return { other: [null, null, null, null], owner: everything, member: [w.g.a, w.g.p1, null, w.g.e1], auditor: everything, platform: everything };
    },
  },

  // ---- tenant mutations ----
  {
    field: "Mutation.createTenant",
    request: op(M.createTenant, input(() => ({ tenantId: unique(), name: unique() }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "Forbidden", owner: "Forbidden", member: "Forbidden", auditor: "Forbidden", platform: "Payload" },
  },
  {
    field: "Mutation.renameTenant",
    request: op(M.renameTenant, input((w) => ({ tenantId: w.a, name: unique() }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "Forbidden", auditor: "Forbidden", platform: "Payload" },
  },
  {
    field: "Mutation.suspendTenant",
    request: op(M.suspendTenant, input((w) => ({ tenantId: w.a, reason: "matrix" }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Forbidden", member: "Forbidden", auditor: "Forbidden", platform: "Payload" },
    // Resumed after every call, so no other row meets a suspended tenant.
    after: (w, h) => h.resume(w.a),
  },
  {
    field: "Mutation.resumeTenant",
    // Suspended first, so a resume that succeeds really changes something.
    request: async (w, h) => {
      await must(h, M.suspendTenant, { tenantId: w.a, reason: "to resume" });
      return { query: M.resumeTenant, variables: { input: { tenantId: w.a } } };
    },
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Forbidden", member: "Forbidden", auditor: "Forbidden", platform: "Payload" },
    after: (w, h) => h.resume(w.a),
  },
  {
    field: "Mutation.setTenantQuota",
    request: op(M.setTenantQuota, input((w) => ({ tenantId: w.a, limits: { vcpus: 100 + fresh() } }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Forbidden", member: "Forbidden", auditor: "Forbidden", platform: "Payload" },
  },

  // ---- project mutations ----
  {
    field: "Mutation.createProject",
    request: op(M.createProject, input((w) => ({ tenantId: w.a, projectId: unique(), name: unique() }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "Forbidden", auditor: "Forbidden", platform: "Payload" },
    after: (w, h, o) => h.archiveProject((o.variables.input as { projectId: string }).projectId),
  },
  {
    field: "Mutation.archiveProject",
    // P1 keeps an active environment: whoever may archive gets the domain's Conflict, nobody archives it.
    request: op(M.archiveProject, input((w) => ({ tenantId: w.a, projectId: w.p1 }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Conflict", member: "Forbidden", auditor: "Forbidden", platform: "Conflict" },
  },
  {
    field: "Mutation.archiveProject",
    label: "a fresh project without environments",
    request: async (w, h) => ({ query: M.archiveProject, variables: { input: { tenantId: w.a, projectId: await h.spareProject() } } }),
    // The member sees only P1: any other project does not exist for it.
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "NotFound", auditor: "Forbidden", platform: "Payload" },
    after: (w, h, o) => h.archiveProject((o.variables.input as { projectId: string }).projectId),
  },
  {
    field: "Mutation.setProjectQuota",
    request: op(M.setProjectQuota, input((w) => ({ tenantId: w.a, projectId: w.p1, limits: { memoryMiB: fresh() } }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "Forbidden", auditor: "Forbidden", platform: "Payload" },
  },
  {
    field: "Mutation.setProjectQuota",
    label: "of a sibling project",
    request: op(M.setProjectQuota, input((w) => ({ tenantId: w.a, projectId: w.p2, limits: { memoryMiB: fresh() } }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "NotFound", auditor: "Forbidden", platform: "Payload" },
  },

  // ---- environment mutations ----
  {
    field: "Mutation.createEnvironment",
    request: op(M.createEnvironment, input((w) => ({ tenantId: w.a, projectId: w.p1, environmentId: unique(), name: unique() }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "Payload", auditor: "Forbidden", platform: "Payload" },
    after: (w, h, o) => h.archiveEnvironment(w.p1, (o.variables.input as { environmentId: string }).environmentId),
  },
  {
    field: "Mutation.createEnvironment",
    label: "in a sibling project",
    request: op(M.createEnvironment, input((w) => ({ tenantId: w.a, projectId: w.p2, environmentId: unique(), name: unique() }))),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "NotFound", auditor: "Forbidden", platform: "Payload" },
    after: (w, h, o) => h.archiveEnvironment(w.p2, (o.variables.input as { environmentId: string }).environmentId),
  },
  {
    field: "Mutation.archiveEnvironment",
    request: async (w, h) => ({ query: M.archiveEnvironment, variables: { input: { tenantId: w.a, projectId: w.p1, environmentId: await h.spareEnvironment(w.p1) } } }),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "Payload", auditor: "Forbidden", platform: "Payload" },
    after: (w, h, o) => h.archiveEnvironment(w.p1, (o.variables.input as { environmentId: string }).environmentId),
  },
  {
    field: "Mutation.archiveEnvironment",
    label: "in a sibling project",
    request: async (w, h) => ({ query: M.archiveEnvironment, variables: { input: { tenantId: w.a, projectId: w.p2, environmentId: await h.spareEnvironment(w.p2) } } }),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "NotFound", auditor: "Forbidden", platform: "Payload" },
    after: (w, h, o) => h.archiveEnvironment(w.p2, (o.variables.input as { environmentId: string }).environmentId),
  },

  // ---- subscriptions ----
  {
    field: "Subscription.resourceChanged",
    request: op(RESOURCE_CHANGED, (w) => ({ tenantId: w.a })),
    expect: { anonymous: "UNAUTHENTICATED", other: "NOT_FOUND", owner: "data", member: "data", auditor: "data", platform: "data" },
    // Only tenant A's changes; the member's without its sibling project's.
    sees: () => ({ owner: ["p2", "p1"], member: ["p1"], auditor: ["p2", "p1"], platform: ["p2", "p1"] }),
  },
  {
    field: "Subscription.resourceChanged",
    label: "of a sibling project",
    request: op(RESOURCE_CHANGED, (w) => ({ tenantId: w.a, projectId: w.p2 })),
    expect: { anonymous: "UNAUTHENTICATED", other: "NOT_FOUND", owner: "data", member: "NOT_FOUND", auditor: "data", platform: "data" },
    sees: () => ({ owner: ["p2"], auditor: ["p2"], platform: ["p2"] }),
  },
  {
    field: "Subscription.events",
    label: "every stream the caller may read",
    request: op(EVENTS),
    // History is for auditors and admins; each gets the tenants it may read, nothing else.
    expect: { anonymous: "UNAUTHENTICATED", other: "data", owner: "data", member: "FORBIDDEN", auditor: "data", platform: "data" },
    sees: () => ({ other: ["q1"], owner: ["p2", "p1"], auditor: ["p2", "p1"], platform: ["q1", "p2", "p1"] }),
  },
  {
    field: "Subscription.events",
    label: "tenant A's stream",
    request: op(EVENTS, (w) => ({ streamId: tenantStreamId(w.a) })),
    expect: { anonymous: "UNAUTHENTICATED", other: "NOT_FOUND", owner: "data", member: "NOT_FOUND", auditor: "data", platform: "data" },
    sees: () => ({ owner: ["p2", "p1"], auditor: ["p2", "p1"], platform: ["p2", "p1"] }),
    // The member may see tenant A but not read its history: the whole stream does not exist for it.
    hides: (w) => ({ other: w.a, member: w.a }),
  },

  // ---- hosts: the platform's inventory and Maskin state; to anyone below platform readers no host exists ----
  {
    field: "Query.host",
    request: op(HOST, () => ({ id: matrixHostId })),
    expect: { anonymous: "UNAUTHENTICATED", other: "null", owner: "null", member: "null", auditor: "null", platform: "data" },
    hides: () => ({ other: matrixHostId, owner: matrixHostId, member: matrixHostId, auditor: matrixHostId }),
  },
  {
    field: "Query.hosts",
    request: op(HOSTS),
    expect: { ...all("data"), anonymous: "UNAUTHENTICATED" },
    sees: () => ({ ...nobodyBelowPlatform, platform: [matrixHostId] }),
    pick: (result) => result.nodes.map((host: { hostId: string }) => host.hostId),
  },
  {
    field: "Query.datacenters",
    request: op(DATACENTERS),
    expect: { ...all("data"), anonymous: "UNAUTHENTICATED" },
    sees: () => ({ ...nobodyBelowPlatform, platform: ["osl1/r01/" + matrixHostId] }),
    pick: (result) => result.flatMap((dc: any) => dc.racks.flatMap((rack: any) => rack.hosts.map((host: any) => `${dc.name}/${rack.name}/${host.hostId}`))),
  },
  {
    field: "Query.racks",
    request: op(RACKS, () => ({ datacenter: "osl1" })),
    expect: { ...all("data"), anonymous: "UNAUTHENTICATED" },
    sees: () => ({ ...nobodyBelowPlatform, platform: ["r01"] }),
    pick: (result) => result.map((rack: { name: string }) => rack.name),
  },
  {
    field: "Subscription.hostChanged",
    request: op(HOST_CHANGED, () => ({ datacenter: "osl1" })),
    expect: { anonymous: "UNAUTHENTICATED", other: "FORBIDDEN", owner: "FORBIDDEN", member: "FORBIDDEN", auditor: "FORBIDDEN", platform: "data" },
    writes: ["h1"],
    sees: () => ({ platform: ["h1"] }),
  },

  // ---- VM infrastructure: hypervisors the platform readers'; images anyone's; disk images and VMs by project visibility ----
  // (This harness runs no maskin_vms projection: the lists are empty and single ones null for everyone; the
  // VM infrastructure REST test covers contents. vmChanged reads the log, so its scoping is checked for real.)
  { field: "Query.hypervisors", request: op(HYPERVISORS), expect: { ...all("data"), anonymous: "UNAUTHENTICATED" }, sees: () => ({ ...nobodyBelowPlatform, platform: [] }), pick: (r) => r.nodes.map((n: { hostId: string }) => n.hostId) },
  {
    field: "Query.hypervisor",
    request: op(HYPERVISOR, () => ({ hostId: "matrix-hv" })),
    expect: { ...all("null"), anonymous: "UNAUTHENTICATED" },
    hides: () => ({ other: "matrix-hv", owner: "matrix-hv", member: "matrix-hv", auditor: "matrix-hv", platform: "matrix-hv" }),
  },
  { field: "Query.images", request: op(IMAGES), expect: { ...all("data"), anonymous: "UNAUTHENTICATED" }, sees: () => ({ ...nobodyBelowPlatform, platform: [] }), pick: (r) => r.map((i: { name: string }) => i.name) },
  { field: "Query.diskImages", request: op(DISK_IMAGES), expect: { ...all("data"), anonymous: "UNAUTHENTICATED" }, sees: () => ({ ...nobodyBelowPlatform, platform: [] }), pick: (r) => r.nodes.map((n: { name: string }) => n.name) },
  { field: "Query.vms", request: op(VMS), expect: { ...all("data"), anonymous: "UNAUTHENTICATED" }, sees: () => ({ ...nobodyBelowPlatform, platform: [] }), pick: (r) => r.nodes.map((n: { vmId: string }) => n.vmId) },
  {
    field: "Query.vm",
    request: op(VM, () => ({ id: "matrix-vm" })),
    expect: { ...all("null"), anonymous: "UNAUTHENTICATED" },
    hides: () => ({ other: "matrix-vm", owner: "matrix-vm", member: "matrix-vm", auditor: "matrix-vm", platform: "matrix-vm" }),
  },
  {
    field: "Subscription.vmChanged",
    request: op(VM_CHANGED, (w) => ({ tenantId: w.a })),
    expect: { anonymous: "UNAUTHENTICATED", other: "NOT_FOUND", owner: "data", member: "data", auditor: "data", platform: "data" },
    writes: ["vq1", "vp2", "vp1"],
    sees: () => ({ owner: ["vp2", "vp1"], member: ["vp1"], auditor: ["vp2", "vp1"], platform: ["vp2", "vp1"] }),
  },
  {
    field: "Subscription.vmChanged",
    label: "of a sibling project",
    request: op(VM_CHANGED, (w) => ({ tenantId: w.a, projectId: w.p2 })),
    expect: { anonymous: "UNAUTHENTICATED", other: "NOT_FOUND", owner: "data", member: "NOT_FOUND", auditor: "data", platform: "data" },
    writes: ["vq1", "vp1", "vp2"],
    sees: () => ({ owner: ["vp2"], auditor: ["vp2"], platform: ["vp2"] }),
  },

  // ---- tasks: visible with their scope; cancel/retry need write access to it ----
  { field: "Query.task", request: op(TASK, (w) => ({ id: w.tasks.p1 })), expect: readsA(), hides: (w) => ({ other: w.tasks.p1 }) },
  { field: "Query.task", label: "in a sibling project", request: op(TASK, (w) => ({ id: w.tasks.p2 })), expect: readsSibling(), hides: (w) => ({ other: w.tasks.p2, member: w.tasks.p2 }) },
  {
    field: "Query.tasks",
    request: op(TASKS),
    expect: { ...all("data"), anonymous: "UNAUTHENTICATED" },
    sees: (w) => ({
      other: [taskGlobalId(w.tasks.q1)],
      owner: [taskGlobalId(w.tasks.p1), taskGlobalId(w.tasks.p2)].sort(),
      member: [taskGlobalId(w.tasks.p1)],
      auditor: [taskGlobalId(w.tasks.p1), taskGlobalId(w.tasks.p2)].sort(),
    }),
    pick: (result) => nodeIds(result).sort(),
  },
  {
    field: "Mutation.cancelTask",
    request: async (w, h) => ({ query: CANCEL_TASK, variables: { input: { taskId: await freshTask(w, h, "running"), reason: "matrix" } } }),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "Payload", auditor: "Forbidden", platform: "Payload" },
  },
  {
    field: "Mutation.retryTask",
    request: async (w, h) => ({ query: RETRY_TASK, variables: { input: { taskId: await freshTask(w, h, "failed") } } }),
    expect: { anonymous: "UNAUTHENTICATED", other: "NotFound", owner: "Payload", member: "Payload", auditor: "Forbidden", platform: "Payload" },
  },
  {
    field: "Subscription.taskUpdated",
    label: "every task the caller can see",
    request: op(TASK_UPDATED),
    expect: { ...all("data"), anonymous: "UNAUTHENTICATED" },
    writes: TASK_WRITES,
    sees: () => ({ other: ["tq1"], owner: ["tp2", "tp1"], member: ["tp1"], auditor: ["tp2", "tp1"], platform: ["tq1", "tp2", "tp1"] }),
  },
  {
    field: "Subscription.taskUpdated",
    label: "one task",
    request: op(TASK_UPDATED, (w) => ({ id: w.tasks.p1 })),
    expect: { anonymous: "UNAUTHENTICATED", other: "NOT_FOUND", owner: "data", member: "data", auditor: "data", platform: "data" },
    writes: TASK_WRITES,
    sees: () => ({ owner: ["tp1"], member: ["tp1"], auditor: ["tp1"], platform: ["tp1"] }),
    hides: (w) => ({ other: w.tasks.p1 }),
  },
];

type MatrixHarness = GraphqlHarness & {
  /** A fresh active project in A, made by the platform-admin. */
  spareProject(): Promise<string>;
  /** A fresh active environment in A/`projectId`, made by the platform-admin. */
  spareEnvironment(projectId: string): Promise<string>;
  /** Archive as platform-admin, whatever state it is in (NotFound when the call under test never made it). */
  archiveProject(projectId: string): Promise<void>;
  archiveEnvironment(projectId: string, environmentId: string): Promise<void>;
  resume(tenantId: string): Promise<void>;
  /** One of the subscription rows' writes, as platform-admin; returns its log position. */
  write(which: Write): Promise<string>;
};

describe("GraphQL authorization matrix", () => {
  let h: MatrixHarness;
  let world: World;
  let callers: Record<Caller, TestActor | null>;
  const platform = actors.platformAdmin();

  /** Runs a mutation as platform-admin for its effect; it may be refused as data, never with a GraphQL error. */
  async function asPlatform(document: string, input: Record<string, unknown>): Promise<any> {
    const response = await h.gql(platform, document, { input });
    expect(response.body.errors, response.raw).toBeUndefined();
    return response.body.data?.r;
  }

  beforeAll(async () => {
    // Generous: other test files' open transactions on the shared server can hold the log back for a moment.
    const base = await createGraphqlHarness({ writeWaitMs: 20_000 });
    const run = uuidv7().slice(-8);
    const ids = { a: `ta-${run}`, b: `tb-${run}`, p1: `p1-${run}`, p2: `p2-${run}`, q1: `q1-${run}`, e1: `e1-${run}` };
    world = {
      ...ids,
      tasks: { q1: `task-q1-${run}`, p2: `task-p2-${run}`, p1: `task-p1-${run}` },
      g: {
        a: tenantGlobalId(ids.a),
        b: tenantGlobalId(ids.b),
        p1: projectGlobalId(ids.a, ids.p1),
        p2: projectGlobalId(ids.a, ids.p2),
        e1: environmentGlobalId(ids.a, ids.p1, ids.e1),
      },
    };
    const w = world;
    h = Object.assign(base, {
      spareProject: async () => {
        const projectId = unique();
        await must(base, CREATE_PROJECT, { tenantId: w.a, projectId, name: projectId });
        return projectId;
      },
      spareEnvironment: async (projectId: string) => {
        const environmentId = unique();
        await must(base, CREATE_ENVIRONMENT, { tenantId: w.a, projectId, environmentId, name: environmentId });
        return environmentId;
      },
      archiveProject: async (projectId: string) => {
        await asPlatform(M.archiveProject, { tenantId: w.a, projectId });
      },
      archiveEnvironment: async (projectId: string, environmentId: string) => {
        await asPlatform(M.archiveEnvironment, { tenantId: w.a, projectId, environmentId });
      },
      resume: async (tenantId: string) => {
        await asPlatform(M.resumeTenant, { tenantId });
      },
      write: async (which: Write) => {
        if (which === "vq1" || which === "vp2" || which === "vp1") {
          // A VM event in B/Q1, A/P2 or A/P1: a new VM each time, so every write is an event.
          const [tenantId, projectId] = { vq1: [w.b, w.q1], vp2: [w.a, w.p2], vp1: [w.a, w.p1] }[which];
          const vmId = `matrix-vm-${fresh()}`;
          const result = await executeVmCommand(
            base.db.store,
            {
              type: "CreateVm", vmId, name: vmId, tenantId: tenantId!, projectId: projectId!, environmentId: null, datacenter: "osl1",
              resources: { vcpus: 1, memoryMiB: 256, diskGiB: 1 }, image: null, disk: { name: "matrix-disk", mode: "FailIfNotExist" }, nics: [{}],
              quota: { limits: {}, usage: { vms: 0, vcpus: 0, memoryMiB: 0 } }, taskId: `matrix-${fresh()}`, at: new Date().toISOString(),
            },
            { actor: { kind: "user", id: "matrix" }, correlationId: "matrix" },
          );
          if (!result.position) throw new Error("CreateVm wrote nothing");
          return `${result.position.transactionId}.${result.position.globalPosition}`;
        }
        if (which === "h1") {
          // A host change: its desired power flips each time, so every write is an event.
          powerFlips += 1;
          const state = powerFlips % 2 === 0 ? "on" : "off";
          const result = await executeHostCommand(
            base.db.store,
            { type: "SetDesiredPower", hostId: matrixHostId, state, taskId: `matrix-${fresh()}`, at: new Date().toISOString() },
            { actor: { kind: "user", id: "matrix" }, correlationId: "matrix", scope: { tenantId: PLATFORM_TENANT }, datacenter: "osl1" },
          );
          if (!result.position) throw new Error("SetDesiredPower wrote nothing");
          return `${result.position.transactionId}.${result.position.globalPosition}`;
        }
        if (which === "tq1" || which === "tp2" || which === "tp1") {
          const taskId = { tq1: w.tasks.q1, tp2: w.tasks.p2, tp1: w.tasks.p1 }[which];
          const scope = { tq1: [w.b, w.q1], tp2: [w.a, w.p2], tp1: [w.a, w.p1] }[which];
          const driver = new TaskDriver(base.db.store, taskId, { tenantId: scope[0]!, projectId: scope[1]!, environmentId: null });
          const { position } = await driver.progress("one", 50, `m-${fresh()}`);
          await base.runner.waitForPosition("tasks", position!, 20_000);
          return `${position!.transactionId}.${position!.globalPosition}`;
        }
        const [tenantId, projectId] = { q1: [w.b, w.q1], p2: [w.a, w.p2], p1: [w.a, w.p1] }[which];
        return (await must(base, SET_PROJECT_QUOTA, { tenantId, projectId, limits: { memoryMiB: fresh() } })).position as string;
      },
    });
    await must(h, CREATE_TENANT, { tenantId: w.a, name: "tenant-a" });
    await must(h, CREATE_TENANT, { tenantId: w.b, name: "tenant-b" });
    await must(h, CREATE_PROJECT, { tenantId: w.a, projectId: w.p1, name: "p1" });
    await must(h, CREATE_PROJECT, { tenantId: w.a, projectId: w.p2, name: "p2" });
    await must(h, CREATE_PROJECT, { tenantId: w.b, projectId: w.q1, name: "q1" });
    await must(h, CREATE_ENVIRONMENT, { tenantId: w.a, projectId: w.p1, environmentId: w.e1, name: "e1" });
    for (const [taskId, tenantId, projectId] of [[w.tasks.q1, w.b, w.q1], [w.tasks.p2, w.a, w.p2], [w.tasks.p1, w.a, w.p1]] as const) {
      const driver = new TaskDriver(h.db.store, taskId, { tenantId, projectId, environmentId: null });
      await driver.create(["one"], { resource: { type: "world", id: projectId } });
      const { position } = await driver.start("one");
      await h.runner.waitForPosition("tasks", position!, 20_000);
    }
    const imported = await h.app.inject({
      method: "POST",
      url: "/v1/inventory/import",
      headers: actorHeader(platform),
      payload: { document: { datacenters: [{ name: "osl1", racks: [{ name: "r01", hosts: [{ name: "m-node", serial: "SN-M", macs: ["52:54:00:aa:bb:01"] }] }] }] } },
    });
    expect(imported.statusCode, imported.body).toBe(200);
    const listed = await h.app.inject({ method: "GET", url: "/v1/hosts?name=m-node", headers: actorHeader(platform) });
    matrixHostId = (JSON.parse(listed.body).items as Array<{ id: string }>)[0]!.id;
    callers = {
      anonymous: null,
      other: actors.tenantAdmin(w.b),
      owner: actors.tenantAdmin(w.a),
      member: actors.member(w.a, w.p1),
      auditor: actors.auditor(w.a),
      platform,
    };
  });
  afterAll(async () => {
    await h?.dispose();
  });

  it("has a row for every root field of the served schema, and every row names a served field", async () => {
    // The schema as /graphql serves it (introspection), not as the SDL files say it should be.
    const introspection = await h.gql<IntrospectionQuery>(platform, getIntrospectionQuery());
    expect(introspection.body.errors, introspection.raw.slice(0, 500)).toBeUndefined();
    const schema = buildClientSchema(introspection.body.data!);
    const served = new Set<string>();
    for (const type of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
      if (!type) continue;
      for (const name of Object.keys(type.getFields())) served.add(`${type.name}.${name}`);
    }
    const covered = new Set(ROWS.map((row) => row.field));
    expect(served.size).toBeGreaterThanOrEqual(20);
    expect([...served].filter((field) => !covered.has(field as Field)), "root fields without a row in the matrix").toEqual([]);
    expect([...covered].filter((field) => !served.has(field)), "rows for root fields that are not served").toEqual([]);
  });

  for (const row of ROWS) {
    it(`${row.field}${row.label ? ` (${row.label})` : ""}`, async () => {
      for (const caller of CALLERS) {
        const operation = await row.request(world, h);
        const expected = row.expect[caller];
        const where = `${caller}: ${row.field}${row.label ? ` (${row.label})` : ""} ${JSON.stringify(operation.variables)}`;
        if (row.field.startsWith("Subscription.")) await checkSubscription(row, caller, operation, expected, where);
        else await checkRequest(row, caller, operation, expected, where);
        await row.after?.(world, h, operation);
      }
    });
  }

  it("never lists another tenant to a tenant's admin, member or auditor; the platform-admin gets them all", async () => {
    for (const caller of ["other", "owner", "member", "auditor"] as const) {
      const { body } = await h.gql(callers[caller], `{ tenants(first: 100) { nodes { tenantId projects(first: 100) { nodes { tenantId projectId } } } } }`);
      expect(body.errors).toBeUndefined();
      const tenants = body.data.tenants.nodes as Array<{ tenantId: string; projects: { nodes: Array<{ tenantId: string; projectId: string }> } }>;
      const own = caller === "other" ? world.b : world.a;
      expect(tenants.map((t) => t.tenantId), caller).toEqual([own]);
      expect(tenants.flatMap((t) => t.projects.nodes).every((p) => p.tenantId === own), caller).toBe(true);
      if (caller === "member") expect(tenants[0]!.projects.nodes.map((p) => p.projectId)).toEqual([world.p1]);
    }
    const everything = await h.gql(platform, `{ tenants(first: 100) { nodes { tenantId } } }`);
    const ids = (everything.body.data.tenants.nodes as Array<{ tenantId: string }>).map((t) => t.tenantId);
    expect(ids).toEqual(expect.arrayContaining([world.a, world.b]));
  });

  /** A query or mutation over HTTP. */
  async function checkRequest(row: Row, caller: Caller, operation: Operation, expected: Outcome, where: string): Promise<void> {
    const before = await h.eventCount();
    const response = await h.gql(callers[caller], operation.query, operation.variables);
    const appended = (await h.eventCount()) - before;
    const { body } = response;
    if (expected === "UNAUTHENTICATED") {
      expect(body.errors?.map((error) => error.extensions?.code), `${where} -> ${response.raw}`).toEqual(["UNAUTHENTICATED"]);
      expect(body.data?.r ?? null, where).toBeNull();
      expect(appended, where).toBe(0);
      return;
    }
    expect(response.status, `${where} -> ${response.raw}`).toBe(200);
    expect(body.errors, `${where} -> ${response.raw}`).toBeUndefined();
    const result = body.data.r;
    switch (expected) {
      case "null":
        expect(result, `${where} -> ${response.raw}`).toBeNull();
        break;
      case "data":
        expect(result, `${where} -> ${response.raw}`).not.toBeNull();
        if (result.quota) expect(result.quota.limits, where).toBeDefined();
        break;
      case "Payload":
        expect(result.__typename, `${where} -> ${response.raw}`).toMatch(/Payload$/);
        expect(result.changed, `${where}: a success that changed nothing proves nothing`).toBe(true);
        expect(appended, where).toBeGreaterThan(0);
        break;
      default:
        expect(result.__typename, `${where} -> ${response.raw}`).toBe(expected);
        expect(result.code, where).toMatch({ NotFound: /^(tenant|project|environment|task)_not_found$/, Forbidden: /^forbidden$/, Conflict: /./ }[expected as string] ?? /^$/);
        expect(appended, `${where}: a refused mutation appends nothing`).toBe(0);
    }
    const visible = row.sees?.(world)[caller];
    if (visible) expect((row.pick ?? nodeIds)(result), `${where}: sees exactly`).toEqual(visible);
    await expectSameAsMissing(row, caller, operation, expected, where, async (variables) => {
      const again = await h.gql(callers[caller], operation.query, variables);
      return again.raw;
    }, response.raw);
  }

  /** A subscription over graphql-transport-ws, on a connection of its own. */
  async function checkSubscription(row: Row, caller: Caller, operation: Operation, expected: Outcome, where: string): Promise<void> {
    const client = await h.ws(callers[caller]);
    try {
      const sub = Collected.start<any>(client, operation.query, operation.variables, (data) => data.r);
      if (expected !== "data") {
        const failure = JSON.stringify(await sub.failure());
        expect(failure, where).toContain(`"code":"${expected}"`);
        expect(sub.items, where).toEqual([]);
        await expectSameAsMissing(row, caller, operation, expected, where, async (variables) =>
          JSON.stringify(await Collected.start(client, operation.query, variables).failure()), failure);
        return;
      }
      const wanted = row.sees?.(world)[caller] as readonly Write[] | undefined;
      if (!wanted || wanted.length === 0) throw new Error(`${where}: a subscription row that delivers needs the writes it sees`);
      // graphql-transport-ws has no "subscribed" acknowledgement: repeat a write the caller may see until
      // one arrives, so the subscription is known to be live before the writes that matter.
      const probe = wanted.at(-1)!;
      let skip = -1;
      for (let attempt = 0; attempt < 20 && skip < 0; attempt++) {
        const position = await h.write(probe);
        try {
          await sub.until((items) => items.some((item) => item.position === position), 1_000);
          skip = sub.items.length;
        } catch (error) {
          if (sub.error !== undefined || sub.completed) throw error;
        }
      }
      if (skip < 0) throw new Error(`${where}: the subscription never went live`);
      // What the caller must not receive goes first; the last write is one it must receive, so once that
      // arrived anything it leaked would have arrived before it (the log is delivered in order).
      const order = [...(row.writes ?? WRITES).filter((write) => !wanted.includes(write)), ...wanted];
      const positions = new Map<string, Write>();
      let last = "";
      for (const write of order) {
        last = await h.write(write);
        positions.set(last, write);
      }
      const items = await sub.until((received) => received.some((item) => item.position === last));
      expect(items.slice(skip).map((item) => positions.get(item.position) ?? `unexpected ${JSON.stringify(item)}`), where).toEqual(wanted);
      sub.stop();
    } finally {
      await client.dispose();
    }
  }

  /**
   * No existence leak: whatever the caller gets for a resource it may not see
   * (null, a missing row, a NotFound result, a NOT_FOUND error) is exactly what
   * it gets for an id that does not exist, the ids themselves aside.
   */
  async function expectSameAsMissing(
    row: Row,
    caller: Caller,
    operation: Operation,
    expected: Outcome,
    where: string,
    again: (variables: Record<string, unknown>) => Promise<string>,
    answer: string,
  ): Promise<void> {
    if (expected === "UNAUTHENTICATED") return;
    const target = row.hides ? row.hides(world)[caller] : hiddenId(caller, operation.variables);
    if (target === undefined) {
      if (expected === "null" || expected === "NotFound" || expected === "NOT_FOUND") {
        throw new Error(`${where}: answers ${expected} but names nothing the caller cannot see`);
      }
      return;
    }
    const missing = `missing-${uuidv7()}`;
    const variables = substitute(operation.variables, target, missing) as Record<string, unknown>;
    expect(JSON.stringify(variables), `${where}: the leak check must change the request`).not.toBe(JSON.stringify(operation.variables));
    const other = await again(variables);
    expect(other.replaceAll(missing, "<id>"), `${where}: invisible vs missing`).toBe(answer.replaceAll(target, "<id>"));
  }

  /**
   * The outermost id in the request that the caller may not see: tenant A for
   * B's admin, a project other than P1 for the member; others see all of A.
   */
  function hiddenId(caller: Caller, variables: Record<string, unknown>): string | undefined {
    const tenants = new Set<string>();
    const projects = new Set<string>();
    const tasks = new Set<string>();
    const walk = (value: unknown, key?: string): void => {
      if (typeof value === "string") {
        const global = fromGlobalId(value);
        if (global?.type === "Task") tasks.add(global.taskId);
        else if (global) {
          tenants.add(global.tenantId);
          if (global.type !== "Tenant") projects.add(global.projectId);
        } else if (key === "taskId") tasks.add(value);
        else if (key === "projectId") projects.add(value);
        else if (key === "tenantId" || key === "id") tenants.add(value);
      } else if (Array.isArray(value)) value.forEach((item) => walk(item));
      else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) walk(v, k);
    };
    walk(variables);
    // Tasks named by id (mutation inputs) in this world live in A/P1: invisible to B's admin only.
    if (caller === "other") return tenants.has(world.a) ? world.a : [...tasks][0];
    if (caller === "member") return [...projects].find((project) => project !== world.p1);
    return undefined;
  }
});

/** `value` with `target` replaced by `missing` everywhere, inside global ids too. */
function substitute(value: unknown, target: string, missing: string): unknown {
  if (typeof value === "string") {
    const key = fromGlobalId(value);
    if (key) return toGlobalId(JSON.parse(JSON.stringify(key).replaceAll(JSON.stringify(target), JSON.stringify(missing))));
    return value.replaceAll(target, missing);
  }
  if (Array.isArray(value)) return value.map((item) => substitute(item, target, missing));
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, target, missing)]));
  return value;
}
