import { getIntrospectionQuery } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_COST, MAX_DEPTH } from "../../../api/graphql/limits.ts";
import { actors, createGraphqlHarness, type GraphqlHarness } from "./support/harness.ts";

let h: GraphqlHarness;
const root = actors.platformAdmin();

beforeAll(async () => {
  h = await createGraphqlHarness();
});

afterAll(async () => {
  await h?.dispose();
});

const codes = (body: { errors?: Array<{ extensions?: Record<string, unknown> }> }) => (body.errors ?? []).map((e) => e.extensions?.code);

/** Three connection levels through edges: exactly the depth limit. */
const THREE_LEVELS = `{ tenants { edges { node { projects { edges { node { environments { edges { node { id } } } } } } } } } }`;

describe("query limits", () => {
  it("allows the deepest useful query and refuses one level more, before executing anything", async () => {
    expect(MAX_DEPTH).toBe(10);
    const ok = await h.gql(root, THREE_LEVELS);
    expect(ok.status).toBe(200);
    expect(ok.body.errors).toBeUndefined();

    const deeper = await h.gql(root, `{ tenants { edges { node { projects { edges { node { environments { edges { node { project { id } } } } } } } } } } }`);
    expect(deeper.status).toBe(400);
    expect(deeper.body.data).toBeNull();
    expect(codes(deeper.body)).toEqual(["QUERY_TOO_DEEP"]);
  });

  it("counts depth through fragments, and cycles through the object graph are bounded by it", async () => {
    const cyclic = await h.gql(root, `
      query { node(id: "x") { ...P } }
      fragment P on Project { tenant { projects { nodes { tenant { projects { nodes { tenant { projects { nodes { tenant { id } } } } } } } } } } }`);
    expect(cyclic.status).toBe(400);
    expect(codes(cyclic.body)).toContain("QUERY_TOO_DEEP");
  });

  it("refuses a query whose page sizes multiply past the budget, counting variables as sent", async () => {
    const nested = `query($n: Int, $m: Int) { tenants(first: $n) { nodes { name projects(first: $m) { nodes { name environments(first: $m) { nodes { id name status } } } } } } }`;
    const costly = await h.gql(root, nested, { n: 100, m: 100 });
    expect(costly.status).toBe(400);
    expect(codes(costly.body)).toEqual(["QUERY_TOO_COSTLY"]);
    expect(costly.body.errors?.[0]?.extensions).toMatchObject({ limit: MAX_COST });

    const modest = await h.gql(root, nested, { n: 5, m: 5 });
    expect(modest.status).toBe(200);
    expect(modest.body.errors).toBeUndefined();

    // Aliases add up.
    const aliases = Array.from({ length: 30 }, (_, i) => `a${i}: tenants(first: 100) { nodes { projects(first: 100) { nodes { id } } } }`).join(" ");
    const wide = await h.gql(root, `{ ${aliases} }`);
    expect(wide.status).toBe(400);
    expect(codes(wide.body)).toEqual(["QUERY_TOO_COSTLY"]);
  });

  it("refuses first above 100 and more than 100 ids, as literals or variables", async () => {
    const literal = await h.gql(root, `{ tenants(first: 101) { nodes { id } } }`);
    expect(literal.status).toBe(400);
    expect(codes(literal.body)).toEqual(["BAD_USER_INPUT"]);

    const variable = await h.gql(root, `query($n: Int) { tenants(first: $n) { nodes { id } } }`, { n: 1_000 });
    expect(variable.status).toBe(400);
    expect(codes(variable.body)).toEqual(["BAD_USER_INPUT"]);

    const ids = Array.from({ length: 101 }, (_, i) => `id${i}`);
    const many = await h.gql(root, `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, { ids });
    expect(many.status).toBe(400);
    expect(codes(many.body)).toEqual(["BAD_USER_INPUT"]);
  });

  it("costs each fragment once: an exponential fragment bomb is refused fast", async () => {
    const levels = 40;
    const fragments = [`fragment F0 on Tenant { id name }`];
    for (let i = 1; i <= levels; i++) fragments.push(`fragment F${i} on Tenant { ...F${i - 1} ...F${i - 1} }`);
    const started = Date.now();
    const bomb = await h.gql(root, `{ tenant(id: "x") { ...F${levels} } } ${fragments.join(" ")}`);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(bomb.status).toBeLessThan(500);
    expect(bomb.body.data ?? null).toBeNull();
    expect(codes(bomb.body)).toEqual(["QUERY_TOO_COSTLY"]);
  });

  it("lets introspection through (its size is the schema's), and bounds parse work by tokens", async () => {
    const introspection = await h.gql(root, getIntrospectionQuery());
    expect(introspection.status).toBe(200);
    expect(introspection.body.errors).toBeUndefined();
    expect(introspection.body.data.__schema.queryType.name).toBe("Query");

    const huge = await h.gql(root, `{ ${Array.from({ length: 6_000 }, (_, i) => `a${i}: __typename`).join(" ")} }`);
    expect(huge.status).toBe(400);
    expect(codes(huge.body)).toEqual(["GRAPHQL_PARSE_FAILED"]);
  });

  it("answers syntax errors, unknown fields and bad variables with 400 and codes, never 5xx", async () => {
    const syntax = await h.gql(root, `{ tenants { `);
    expect(syntax.status).toBe(400);
    expect(codes(syntax.body)).toEqual(["GRAPHQL_PARSE_FAILED"]);

    const unknown = await h.gql(root, `{ nope }`);
    expect(unknown.status).toBe(400);
    expect(codes(unknown.body)).toEqual(["GRAPHQL_VALIDATION_FAILED"]);

    const variables = await h.gql(root, `query($n: Int) { tenants(first: $n) { nodes { id } } }`, { n: "ten" });
    expect(variables.status).toBe(400);
    expect(codes(variables.body)).toEqual(["BAD_USER_INPUT"]);

    const notJson = await h.app.inject({ method: "POST", url: "/graphql", headers: { "content-type": "application/json" }, payload: "{not json" });
    expect(notJson.statusCode).toBe(400);
    expect(JSON.parse(notJson.body).errors[0].extensions.code).toBe("BAD_REQUEST");

    const plain = await h.app.inject({ method: "POST", url: "/graphql", headers: { "content-type": "text/plain" }, payload: "{ tenants { nodes { id } } }" });
    expect(plain.statusCode).toBe(400);
    expect(JSON.parse(plain.body).errors[0].extensions.code).toBe("BAD_REQUEST");

    const noQuery = await h.app.inject({ method: "POST", url: "/graphql", headers: { "content-type": "application/json" }, payload: "{}" });
    expect(noQuery.statusCode).toBe(400);
    expect(JSON.parse(noQuery.body).errors[0].extensions.code).toBe("BAD_REQUEST");
  });
});
