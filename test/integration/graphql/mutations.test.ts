import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actors, createGraphqlHarness, type GraphqlHarness, type TestActor } from "./support/harness.ts";
import { seedTenancy, type Fixture } from "./support/seed.ts";

let h: GraphqlHarness;
let f: Fixture;
const root = actors.platformAdmin();

beforeAll(async () => {
  h = await createGraphqlHarness();
  f = await seedTenancy(h, "m");
});

afterAll(async () => {
  await h?.dispose();
});

/** Every member of every result union, so a test sees whichever came back. */
const OUTCOME = `__typename
  ... on MutationError { code message }
  ... on ValidationFailed { fields { path message code } }
  ... on NotFound { resource resourceId }
  ... on Conflict { details }
  ... on Rejected { details }
  ... on Accepted { position message }`;

const M = {
  createTenant: `mutation($input: CreateTenantInput!) { r: createTenant(input: $input) { ${OUTCOME}
    ... on TenantPayload { position changed tenant { tenantId name displayName status streamVersion } } } }`,
  renameTenant: `mutation($input: RenameTenantInput!) { r: renameTenant(input: $input) { ${OUTCOME}
    ... on TenantPayload { position changed tenant { name displayName streamVersion } } } }`,
  suspendTenant: `mutation($input: SuspendTenantInput!) { r: suspendTenant(input: $input) { ${OUTCOME}
    ... on TenantPayload { changed tenant { status suspendedReason } } } }`,
  resumeTenant: `mutation($input: ResumeTenantInput!) { r: resumeTenant(input: $input) { ${OUTCOME}
    ... on TenantPayload { changed tenant { status suspendedReason } } } }`,
  createProject: `mutation($input: CreateProjectInput!) { r: createProject(input: $input) { ${OUTCOME}
    ... on ProjectPayload { position changed project { projectId name description status tenant { streamVersion } } } } }`,
  archiveProject: `mutation($input: ArchiveProjectInput!) { r: archiveProject(input: $input) { ${OUTCOME}
    ... on ProjectPayload { changed project { status } } } }`,
  createEnvironment: `mutation($input: CreateEnvironmentInput!) { r: createEnvironment(input: $input) { ${OUTCOME}
    ... on EnvironmentPayload { changed environment { environmentId name status project { projectId } } } } }`,
  archiveEnvironment: `mutation($input: ArchiveEnvironmentInput!) { r: archiveEnvironment(input: $input) { ${OUTCOME}
    ... on EnvironmentPayload { changed environment { status } } } }`,
  setTenantQuota: `mutation($input: SetTenantQuotaInput!) { r: setTenantQuota(input: $input) { ${OUTCOME}
    ... on TenantQuotaPayload { changed quota { limits { vcpus vms } } tenant { tenantId } } } }`,
  setProjectQuota: `mutation($input: SetProjectQuotaInput!) { r: setProjectQuota(input: $input) { ${OUTCOME}
    ... on ProjectQuotaPayload { changed quota { limits { vcpus vms } } project { projectId } } } }`,
};

/** Runs a mutation; asserts it answered 200 without GraphQL errors, and reports how many events it appended. */
async function run(actor: TestActor, document: string, input: Record<string, unknown>): Promise<{ r: any; appended: number; raw: string }> {
  const before = await h.eventCount();
  const response = await h.gql(actor, document, { input });
  expect(response.status, response.raw).toBe(200);
  expect(response.body.errors, response.raw).toBeUndefined();
  return { r: response.body.data.r, appended: (await h.eventCount()) - before, raw: response.raw };
}

describe("mutations", () => {
  it("answer the resource as the read model shows it after the write, with its position", async () => {
    const created = await run(root, M.createTenant, { tenantId: "m-new", name: "newco", displayName: "New Co" });
    expect(created.r).toMatchObject({
      __typename: "TenantPayload",
      changed: true,
      tenant: { tenantId: "m-new", name: "newco", displayName: "New Co", status: "ACTIVE", streamVersion: 0 },
    });
    expect(created.r.position).toMatch(/^\d+\.\d+$/);
    expect(created.appended).toBe(1);
    // Read-your-writes: the next read shows it without waiting.
    const read = await h.gql(root, `{ tenant(id: "m-new") { name } }`);
    expect(read.body.data.tenant).toEqual({ name: "newco" });

    // A retry of the same create changes nothing and says so.
    const retried = await run(root, M.createTenant, { tenantId: "m-new", name: "newco", displayName: "New Co" });
    expect(retried.r).toMatchObject({ __typename: "TenantPayload", changed: false, tenant: { tenantId: "m-new" } });
    expect(retried.appended).toBe(0);
  });

  it("makes an id when the caller sends none", async () => {
    const { r } = await run(root, M.createTenant, { name: "anon-id" });
    expect(r.tenant.tenantId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
    const project = await run(root, M.createProject, { tenantId: r.tenant.tenantId, name: "p" });
    expect(project.r.project.projectId).toMatch(/^[0-9a-f]{8}-/);
  });

  it("rename: displayName absent keeps it, null clears it", async () => {
    const kept = await run(actors.tenantAdmin(f.a), M.renameTenant, { tenantId: f.a, name: "m-alpha2" });
    expect(kept.r.tenant).toMatchObject({ name: "m-alpha2", displayName: "Alpha AS" });
    const cleared = await run(actors.tenantAdmin(f.a), M.renameTenant, { tenantId: f.a, name: "m-alpha2", displayName: null });
    expect(cleared.r.tenant).toMatchObject({ name: "m-alpha2", displayName: null });
  });

  it("suspend and resume; a suspended tenant refuses changes with Conflict", async () => {
    const suspended = await run(root, M.suspendTenant, { tenantId: f.b, reason: "unpaid" });
    expect(suspended.r).toMatchObject({ changed: true, tenant: { status: "SUSPENDED", suspendedReason: "unpaid" } });
    const refused = await run(actors.tenantAdmin(f.b), M.createProject, { tenantId: f.b, projectId: "m-x", name: "x" });
    expect(refused.r).toMatchObject({ __typename: "Conflict", code: "tenant_suspended" });
    expect(refused.appended).toBe(0);
    const resumed = await run(root, M.resumeTenant, { tenantId: f.b });
    expect(resumed.r).toMatchObject({ changed: true, tenant: { status: "ACTIVE", suspendedReason: null } });
  });

  it("projects and environments: create, archive in order; archiving a project with live environments is a Conflict", async () => {
    const project = await run(actors.tenantAdmin(f.a), M.createProject, { tenantId: f.a, projectId: "m-p9", name: "batch", description: "jobs" });
    expect(project.r).toMatchObject({ __typename: "ProjectPayload", changed: true, project: { projectId: "m-p9", name: "batch", description: "jobs", status: "ACTIVE" } });

    // A project member may create environments in its project.
    const member = actors.member(f.a, "m-p9");
    const environment = await run(member, M.createEnvironment, { tenantId: f.a, projectId: "m-p9", environmentId: "m-e9", name: "dev" });
    expect(environment.r).toMatchObject({ __typename: "EnvironmentPayload", environment: { environmentId: "m-e9", name: "dev", status: "ACTIVE", project: { projectId: "m-p9" } } });

    const busy = await run(actors.tenantAdmin(f.a), M.archiveProject, { tenantId: f.a, projectId: "m-p9" });
    expect(busy.r).toMatchObject({ __typename: "Conflict", code: "project_has_active_environments" });
    expect(busy.appended).toBe(0);

    const archivedEnvironment = await run(member, M.archiveEnvironment, { tenantId: f.a, projectId: "m-p9", environmentId: "m-e9" });
    expect(archivedEnvironment.r).toMatchObject({ changed: true, environment: { status: "ARCHIVED" } });
    const archived = await run(actors.tenantAdmin(f.a), M.archiveProject, { tenantId: f.a, projectId: "m-p9" });
    expect(archived.r).toMatchObject({ changed: true, project: { status: "ARCHIVED" } });
  });

  it("quotas: set, clear with null, and a project limit above the tenant's is Rejected with details", async () => {
    const set = await run(root, M.setTenantQuota, { tenantId: f.a, limits: { vms: 50 } });
    expect(set.r).toMatchObject({ __typename: "TenantQuotaPayload", changed: true, quota: { limits: { vcpus: 100, vms: 50 } } });
    const cleared = await run(root, M.setTenantQuota, { tenantId: f.a, limits: { vms: null } });
    expect(cleared.r.quota.limits).toEqual({ vcpus: 100, vms: null });

    const project = await run(actors.tenantAdmin(f.a), M.setProjectQuota, { tenantId: f.a, projectId: f.p2, limits: { vcpus: 20 } });
    expect(project.r).toMatchObject({ __typename: "ProjectQuotaPayload", quota: { limits: { vcpus: 20 } }, project: { projectId: f.p2 } });

    const over = await run(actors.tenantAdmin(f.a), M.setProjectQuota, { tenantId: f.a, projectId: f.p2, limits: { vcpus: 1000 } });
    expect(over.r).toMatchObject({ __typename: "Rejected", code: "quota_exceeds_tenant_limit" });
    expect(over.r.details).toBeTypeOf("object");
    expect(over.appended).toBe(0);
  });

  it("ValidationFailed lists every failing field, relative to input, and appends nothing", async () => {
    const bad = await run(root, M.createTenant, { tenantId: "m-bad", name: "Not A Label", displayName: "" });
    expect(bad.r.__typename).toBe("ValidationFailed");
    expect(bad.r.code).toBe("command_invalid");
    expect(bad.r.fields.map((field: any) => field.path).sort()).toEqual(["displayName", "name"]);
    expect(bad.appended).toBe(0);

    const negative = await run(root, M.setTenantQuota, { tenantId: f.a, limits: { vcpus: -1 } });
    expect(negative.r).toMatchObject({ __typename: "ValidationFailed", fields: [{ path: "limits.vcpus" }] });

    for (const tenantId of ["platform", "a/b", "with space"]) {
      const refused = await run(root, M.createTenant, { tenantId, name: "x" });
      expect(refused.r).toMatchObject({ __typename: "ValidationFailed", fields: [{ path: "tenantId" }] });
      expect(refused.appended).toBe(0);
    }
  });

  it("NotFound: what is missing and what is invisible answer identically", async () => {
    const missing = await run(root, M.createProject, { tenantId: "m-ghost", projectId: "m-p", name: "p" });
    expect(missing.r).toEqual({
      __typename: "NotFound",
      code: "tenant_not_found",
      message: "tenant m-ghost does not exist",
      resource: "tenant",
      resourceId: "m-ghost",
    });
    // Tenant A exists, but B's admin cannot see it: the very same answer.
    const hidden = await run(actors.tenantAdmin(f.b), M.createProject, { tenantId: f.a, projectId: "m-p", name: "p" });
    const ghost = await run(actors.tenantAdmin(f.b), M.createProject, { tenantId: "m-ghost", projectId: "m-p", name: "p" });
    expect(hidden.raw.replaceAll(f.a, "ID")).toBe(ghost.raw.replaceAll("m-ghost", "ID"));
    expect(hidden.appended + ghost.appended).toBe(0);

    // A member of p2 cannot see p1: archiving an environment there is NotFound (project), like a project that is not there.
    const sibling = await run(actors.member(f.a, f.p2), M.archiveEnvironment, { tenantId: f.a, projectId: f.p1, environmentId: f.e1 });
    const nothing = await run(actors.member(f.a, f.p2), M.archiveEnvironment, { tenantId: f.a, projectId: "m-none", environmentId: f.e1 });
    expect(sibling.r).toMatchObject({ __typename: "NotFound", resource: "project", resourceId: f.p1 });
    expect(sibling.raw.replaceAll(f.p1, "ID")).toBe(nothing.raw.replaceAll("m-none", "ID"));

    const noEnvironment = await run(root, M.archiveEnvironment, { tenantId: f.a, projectId: f.p1, environmentId: "m-none" });
    expect(noEnvironment.r).toMatchObject({ __typename: "NotFound", code: "environment_not_found", resourceId: "m-none" });
  });

  it("Forbidden only where the actor can see the resource but may not change it", async () => {
    const cases: Array<[TestActor, string, Record<string, unknown>]> = [
      [actors.auditor(f.a), M.createProject, { tenantId: f.a, name: "nope" }],
      [actors.auditor(), M.renameTenant, { tenantId: f.a, name: "nope" }],
      [actors.tenantAdmin(f.a), M.suspendTenant, { tenantId: f.a, reason: "self" }],
      [actors.tenantAdmin(f.a), M.setTenantQuota, { tenantId: f.a, limits: { vcpus: 1 } }],
      [actors.tenantAdmin(f.a), M.createTenant, { name: "mine" }],
      [actors.member(f.a, f.p1), M.archiveProject, { tenantId: f.a, projectId: f.p1 }],
      [actors.member(f.a, f.p1), M.setProjectQuota, { tenantId: f.a, projectId: f.p1, limits: { vcpus: 1 } }],
      [actors.auditor(f.a), M.createEnvironment, { tenantId: f.a, projectId: f.p1, name: "nope" }],
    ];
    for (const [actor, document, input] of cases) {
      const { r, appended } = await run(actor, document, input);
      expect(r, JSON.stringify(input)).toMatchObject({ __typename: "Forbidden", code: "forbidden" });
      expect(appended).toBe(0);
    }
  });

  it("expectedVersion pins the tenant version: a stale one is a Conflict (precondition_failed)", async () => {
    const current = await h.gql(root, `query($id: String!) { tenant(id: $id) { streamVersion } }`, { id: f.a });
    const version = current.body.data.tenant.streamVersion as number;
    const ok = await run(actors.tenantAdmin(f.a), M.createProject, { tenantId: f.a, projectId: "m-pinned", name: "pinned", expectedVersion: version });
    expect(ok.r).toMatchObject({ __typename: "ProjectPayload", project: { tenant: { streamVersion: version + 1 } } });
    const stale = await run(actors.tenantAdmin(f.a), M.createProject, { tenantId: f.a, projectId: "m-late", name: "late", expectedVersion: version });
    expect(stale.r).toMatchObject({ __typename: "Conflict", code: "precondition_failed", details: { expectedVersion: version, currentVersion: version + 1 } });
    expect(stale.appended).toBe(0);
  });

  it("a taken name is a Conflict", async () => {
    const taken = await run(actors.tenantAdmin(f.a), M.createProject, { tenantId: f.a, projectId: "m-other", name: "web" });
    expect(taken.r).toMatchObject({ __typename: "Conflict", code: "project_name_taken" });
  });

  it("two mutations in one document each read their own write", async () => {
    const response = await h.gql(
      actors.tenantAdmin(f.a),
      `mutation($t: String!) {
        one: createProject(input: { tenantId: $t, projectId: "m-two", name: "two" }) { ... on ProjectPayload { project { status } } }
        two: archiveProject(input: { tenantId: $t, projectId: "m-two" }) { ... on ProjectPayload { project { status } } }
      }`,
      { t: f.a },
    );
    expect(response.body).toEqual({ data: { one: { project: { status: "ACTIVE" } }, two: { project: { status: "ARCHIVED" } } } });
  });

  it("anonymous callers get UNAUTHENTICATED, not a payload, and nothing is written", async () => {
    const before = await h.eventCount();
    const response = await h.gql(null, M.createTenant, { input: { name: "anon" } });
    expect(response.status).toBe(200);
    expect(response.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
    expect(await h.eventCount()).toBe(before);
  });

  it("mutations over GET are refused without a 5xx", async () => {
    const response = await h.app.inject({
      method: "GET",
      url: `/graphql?query=${encodeURIComponent('mutation { createTenant(input: { name: "viaget" }) { __typename } }')}`,
      headers: { "x-test-actor": JSON.stringify(root) },
    });
    expect(response.statusCode).toBe(405);
    expect(JSON.parse(response.body).errors[0].extensions.code).toBe("BAD_REQUEST");
  });
});

describe("when the read model lags", () => {
  let lagging: GraphqlHarness;
  beforeAll(async () => {
    lagging = await createGraphqlHarness({ writeWaitMs: 300 });
  });
  afterAll(async () => {
    await lagging?.dispose();
  });

  it("a mutation answers Accepted with the position of its durable write", async () => {
    // With the runner still running the tenant becomes visible (its answer may already be Accepted: 300 ms is tight).
    await lagging.gql(root, M.createTenant, { input: { tenantId: "lag", name: "lag" } });
    await lagging.runner.stop();
    const before = await lagging.eventCount();
    const response = await lagging.gql(root, M.createProject, { input: { tenantId: "lag", projectId: "lag-p", name: "p" } });
    expect(response.body.data.r).toMatchObject({ __typename: "Accepted" });
    expect(response.body.data.r.position).toMatch(/^\d+\.\d+$/);
    expect(await lagging.eventCount()).toBe(before + 1);
  });
});
