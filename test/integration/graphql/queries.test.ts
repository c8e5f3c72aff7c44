import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { environmentGlobalId, projectGlobalId, tenantGlobalId } from "../../../api/graphql/ids.ts";
import { actors, createGraphqlHarness, type GraphqlHarness } from "./support/harness.ts";
import { seedTenancy, type Fixture } from "./support/seed.ts";

let h: GraphqlHarness;
let f: Fixture;
const root = actors.platformAdmin();

beforeAll(async () => {
  h = await createGraphqlHarness();
  f = await seedTenancy(h, "q");
});

afterAll(async () => {
  await h?.dispose();
});

const TENANT = `query($id: String!) {
  tenant(id: $id) {
    id tenantId name displayName status suspendedReason createdAt updatedAt streamVersion
    quota { limits { vcpus memoryMiB vms hosts networks buckets } updatedAt }
  }
}`;

describe("queries", () => {
  it("reads a tenant with its quota; limits beyond 32 bits come through exactly", async () => {
    const { status, body } = await h.gql(root, TENANT, { id: f.a });
    expect(status).toBe(200);
    expect(body.errors).toBeUndefined();
    const tenant = body.data.tenant;
    expect(tenant).toMatchObject({
      id: tenantGlobalId(f.a),
      tenantId: f.a,
      name: "q-alpha",
      displayName: "Alpha AS",
      status: "ACTIVE",
      suspendedReason: null,
      quota: { limits: { vcpus: 100, memoryMiB: 5_000_000_000, vms: null, hosts: null, networks: null, buckets: null } },
    });
    expect(new Date(tenant.createdAt).toISOString()).toBe(tenant.createdAt);
    expect(tenant.quota.updatedAt).not.toBeNull();
    // The tenant stream holds the tenant, its projects, environments and quotas: 8 events so far, versions 0-based.
    expect(tenant.streamVersion).toBe(7);
  });

  it("pages through tenants with Relay connections, in id order", async () => {
    const ids: string[] = [];
    let after: string | null = null;
    for (let pages = 0; pages < 5; pages++) {
      const { body }: { body: any } = await h.gql(root, `query($after: String) { tenants(first: 1, after: $after) {
        edges { cursor node { tenantId } } nodes { tenantId } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`, { after });
      expect(body.errors).toBeUndefined();
      const connection: any = body.data.tenants;
      expect(connection.nodes).toEqual(connection.edges.map((edge: any) => edge.node));
      expect(connection.pageInfo.hasPreviousPage).toBe(false);
      if (connection.edges.length > 0) {
        expect(connection.pageInfo.startCursor).toBe(connection.edges[0].cursor);
        expect(connection.pageInfo.endCursor).toBe(connection.edges.at(-1).cursor);
      }
      ids.push(...connection.edges.map((edge: any) => edge.node.tenantId));
      if (!connection.pageInfo.hasNextPage) break;
      after = connection.pageInfo.endCursor;
    }
    expect(ids).toEqual([f.a, f.b]);
  });

  it("filters lists by status", async () => {
    const { body } = await h.gql(root, `{ tenants(status: SUSPENDED) { nodes { tenantId } } }`);
    expect(body.data.tenants.nodes).toEqual([]);
  });

  it("lists only what the actor may see: a tenant admin its tenant, a member its own project", async () => {
    const admin = await h.gql(actors.tenantAdmin(f.b), `{ tenants { nodes { tenantId } } }`);
    expect(admin.body.data.tenants.nodes).toEqual([{ tenantId: f.b }]);

    const member = await h.gql(actors.member(f.a, f.p2), `query($t: String!) {
      tenants { nodes { tenantId projects { nodes { projectId } } } }
      projects(tenantId: $t) { nodes { projectId name } }
    }`, { t: f.a });
    expect(member.body.errors).toBeUndefined();
    expect(member.body.data.tenants.nodes).toEqual([{ tenantId: f.a, projects: { nodes: [{ projectId: f.p2 }] } }]);
    expect(member.body.data.projects.nodes).toEqual([{ projectId: f.p2, name: "db" }]);
  });

  it("pages a tenant's projects with cursors, top level and nested alike", async () => {
    const first = await h.gql(root, `query($t: String!) { projects(tenantId: $t, first: 2) { nodes { projectId } pageInfo { hasNextPage endCursor } } }`, { t: f.a });
    expect(first.body.data.projects.nodes).toEqual([{ projectId: f.p1 }, { projectId: f.p2 }]);
    expect(first.body.data.projects.pageInfo.hasNextPage).toBe(true);

    const rest = await h.gql(root, `query($t: String!, $after: String) {
      tenant(id: $t) { projects(first: 2, after: $after) { nodes { projectId } pageInfo { hasNextPage } } }
    }`, { t: f.a, after: first.body.data.projects.pageInfo.endCursor });
    expect(rest.body.errors).toBeUndefined();
    expect(rest.body.data.tenant.projects).toEqual({ nodes: [{ projectId: f.p3 }], pageInfo: { hasNextPage: false } });
  });

  it("walks the tree: tenant > projects > environments > project > tenant, quotas on each", async () => {
    const { body } = await h.gql(actors.auditor(f.a), `query($t: String!) {
      tenant(id: $t) { name projects(first: 1) { edges { node {
        name description status quota { limits { vcpus } }
        environments { nodes { id environmentId name status project { projectId tenant { tenantId } } } }
      } } } }
    }`, { t: f.a });
    expect(body.errors).toBeUndefined();
    const project = body.data.tenant.projects.edges[0].node;
    expect(project).toMatchObject({ name: "web", description: "the web", status: "ACTIVE", quota: { limits: { vcpus: 10 } } });
    expect(project.environments.nodes).toEqual([
      { id: environmentGlobalId(f.a, f.p1, f.e1), environmentId: f.e1, name: "prod", status: "ACTIVE", project: { projectId: f.p1, tenant: { tenantId: f.a } } },
      { id: environmentGlobalId(f.a, f.p1, f.e2), environmentId: f.e2, name: "stage", status: "ACTIVE", project: { projectId: f.p1, tenant: { tenantId: f.a } } },
    ]);
  });

  it("batches: a page of tenants with projects, environments and quotas costs a fixed number of queries", async () => {
    let checkouts = 0;
    const count = () => void checkouts++;
    h.db.pool.on("acquire", count);
    try {
      const { body } = await h.gql(root, `{ tenants { nodes {
        quota { limits { vcpus } }
        projects { nodes { tenant { name } quota { limits { vcpus } } environments { nodes { project { name } } } } }
      } } }`);
      expect(body.errors).toBeUndefined();
      expect(body.data.tenants.nodes).toHaveLength(2);
    } finally {
      h.db.pool.off("acquire", count);
    }
    // tenants, tenant quotas, project pages, then tenants + project quotas + environment pages, then projects: one query each.
    expect(checkouts).toBeLessThanOrEqual(7);
  });

  it("node(id) reads any object by its global id; nodes(ids) keeps the order asked", async () => {
    const ids = [tenantGlobalId(f.a), projectGlobalId(f.a, f.p1), environmentGlobalId(f.a, f.p1, f.e2)];
    const { body } = await h.gql(root, `query($ids: [ID!]!, $one: ID!) {
      node(id: $one) { __typename id ... on Project { name } }
      nodes(ids: $ids) { __typename id ... on Tenant { tenantId } ... on Project { projectId } ... on Environment { environmentId } }
    }`, { ids, one: ids[1] });
    expect(body.errors).toBeUndefined();
    expect(body.data.node).toEqual({ __typename: "Project", id: ids[1], name: "web" });
    expect(body.data.nodes).toEqual([
      { __typename: "Tenant", id: ids[0], tenantId: f.a },
      { __typename: "Project", id: ids[1], projectId: f.p1 },
      { __typename: "Environment", id: ids[2], environmentId: f.e2 },
    ]);
  });

  it("what the actor may not see reads exactly like what does not exist", async () => {
    const query = `query($id: ID!, $t: String!, $p: String!) {
      node(id: $id) { id }
      tenant(id: $t) { id }
      projects(tenantId: $t) { nodes { id } }
      project(tenantId: $t, projectId: $p) { id }
      environments(tenantId: $t, projectId: $p) { nodes { id } }
    }`;
    const other = actors.tenantAdmin(f.b);
    const hidden = await h.gql(other, query, { id: projectGlobalId(f.a, f.p1), t: f.a, p: f.p1 });
    const missing = await h.gql(other, query, { id: projectGlobalId("q-nope", "nope"), t: "q-nope", p: "nope" });
    expect(hidden.status).toBe(200);
    expect(hidden.body).toEqual({ data: { node: null, tenant: null, projects: null, project: null, environments: null } });
    expect(missing.raw).toBe(hidden.raw);

    // A member of p2 sees its tenant, not its sibling project p1 nor p1's environments.
    const member = await h.gql(actors.member(f.a, f.p2), query, { id: environmentGlobalId(f.a, f.p1, f.e1), t: f.a, p: f.p1 });
    expect(member.body.data).toEqual({ node: null, tenant: { id: tenantGlobalId(f.a) }, projects: { nodes: [{ id: projectGlobalId(f.a, f.p2) }] }, project: null, environments: null });
  });

  it("ids this API did not make are just not found", async () => {
    const bad = ["", "x", "not base64!", Buffer.from('["Tenant"]').toString("base64url"), Buffer.from('["Vm","a","b"]').toString("base64url"), Buffer.from("{}").toString("base64url")];
    for (const id of bad) {
      const { status, body } = await h.gql(root, `query($id: ID!) { node(id: $id) { id } }`, { id });
      expect(status).toBe(200);
      expect(body).toEqual({ data: { node: null } });
    }
  });

  it("refuses anonymous callers and bad page arguments with coded GraphQL errors", async () => {
    const anonymous = await h.gql(null, `{ tenants { nodes { id } } }`);
    expect(anonymous.status).toBe(200);
    expect(anonymous.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");

    const badCursor = await h.gql(root, `{ tenants(after: "garbage") { nodes { id } } }`);
    expect(badCursor.body.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");

    const projectsCursor = await h.gql(root, `query($t: String!) { projects(tenantId: $t, first: 1) { pageInfo { endCursor } } }`, { t: f.a });
    const crossed = await h.gql(root, `query($after: String) { tenants(after: $after) { nodes { id } } }`, {
      after: projectsCursor.body.data.projects.pageInfo.endCursor,
    });
    expect(crossed.body.errors?.[0]).toMatchObject({ extensions: { code: "BAD_USER_INPUT" } });
    expect(crossed.body.errors?.[0]?.message).toMatch(/another list/);

    const negative = await h.gql(root, `{ tenants(first: -1) { nodes { id } } }`);
    expect(negative.status).toBeLessThan(500);
    expect(negative.body.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });
});
