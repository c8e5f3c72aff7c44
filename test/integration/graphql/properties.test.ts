import fc from "fast-check";
import type { GraphQLInputObjectType } from "graphql";
import { buildTypeSchema } from "../../../api/graphql/schema/index.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actors, createGraphqlHarness, type GraphqlHarness, type TestActor } from "./support/harness.ts";
import { seedTenancy, type Fixture } from "./support/seed.ts";
import { actorHeader } from "../api/support/test-auth.ts";

let h: GraphqlHarness;
let f: Fixture;

beforeAll(async () => {
  h = await createGraphqlHarness();
  f = await seedTenancy(h, "prop");
});

afterAll(async () => {
  await h?.dispose();
});

/** Each mutation with its input type and success payload type. */
const MUTATIONS = {
  createTenant: ["CreateTenantInput", "TenantPayload"],
  renameTenant: ["RenameTenantInput", "TenantPayload"],
  suspendTenant: ["SuspendTenantInput", "TenantPayload"],
  resumeTenant: ["ResumeTenantInput", "TenantPayload"],
  createProject: ["CreateProjectInput", "ProjectPayload"],
  archiveProject: ["ArchiveProjectInput", "ProjectPayload"],
  createEnvironment: ["CreateEnvironmentInput", "EnvironmentPayload"],
  archiveEnvironment: ["ArchiveEnvironmentInput", "EnvironmentPayload"],
  setTenantQuota: ["SetTenantQuotaInput", "TenantQuotaPayload"],
  setProjectQuota: ["SetProjectQuotaInput", "ProjectQuotaPayload"],
} as const;
type MutationName = keyof typeof MUTATIONS;
const NAMES = Object.keys(MUTATIONS) as MutationName[];
/** The SDL, to generate inputs with the fields each input type has. */
const SCHEMA = buildTypeSchema();

interface Request {
  readonly actor: TestActor | null;
  readonly method: "GET" | "POST";
  /** The raw body (POST) or query string (GET). */
  readonly payload: string;
}

function requests(): fc.Arbitrary<Request> {
  const actor = fc.constantFrom<TestActor | null>(
    actors.platformAdmin(),
    actors.tenantAdmin(f.a),
    actors.tenantAdmin(f.b),
    actors.member(f.a, f.p1),
    actors.auditor(f.a),
    actors.auditor(),
    null,
  );
  /** Mostly ids that exist (so refusals come from the rules, not only from absence), sometimes anything. */
  const idOf = (...known: string[]) =>
    fc.oneof(
      { arbitrary: fc.constantFrom(...known), weight: 6 },
      { arbitrary: fc.constantFrom("platform", "", "x/y", "a b", "ü", f.a, f.p1), weight: 1 },
      { arbitrary: fc.stringMatching(/^[a-z0-9-]{1,8}$/), weight: 2 },
      { arbitrary: fc.string({ maxLength: 6 }), weight: 1 },
    );
  const id = idOf(f.a, f.b, f.p1, f.p2, f.e1);
  const text = fc.oneof(
    { arbitrary: fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/), weight: 3 },
    { arbitrary: fc.constantFrom("web", "db", "Bad Name", "-x", "a".repeat(64), "", " "), weight: 2 },
    { arbitrary: fc.string({ maxLength: 12 }), weight: 1 },
  );
  const scalar = fc.oneof(text, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(2 ** 53), fc.constant(-1));
  const limits = fc.dictionary(
    fc.oneof({ arbitrary: fc.constantFrom("vcpus", "memoryMiB", "vms", "hosts", "networks", "buckets"), weight: 20 }, { arbitrary: fc.constant("bogus"), weight: 1 }),
    fc.oneof({ arbitrary: fc.integer({ min: -3, max: 300 }), weight: 12 }, { arbitrary: fc.constant(null), weight: 4 }, { arbitrary: scalar, weight: 1 }),
    { maxKeys: 3 },
  );
  /** Values of the right GraphQL type for each input field most of the time; sometimes of the wrong one. */
  const fieldValue: Record<string, fc.Arbitrary<unknown>> = {
    tenantId: idOf(f.a, f.b),
    projectId: idOf(f.p1, f.p2, f.p3, f.bp),
    environmentId: idOf(f.e1, f.e2),
    name: text,
    displayName: fc.oneof(text, fc.constant(null)),
    description: fc.oneof(text, fc.constant(null)),
    reason: text,
    withDefaultEnvironments: fc.oneof(fc.boolean(), fc.constant(null)),
    limits,
    expectedVersion: fc.oneof({ arbitrary: fc.integer({ min: -1, max: 40 }), weight: 3 }, { arbitrary: fc.constant(null), weight: 1 }),
  };
  const inputFor = (name: MutationName): fc.Arbitrary<Record<string, unknown>> => {
    const type = SCHEMA.getType(MUTATIONS[name][0]) as GraphQLInputObjectType;
    const fields = Object.values(type.getFields());
    const typed = fc.record(
      Object.fromEntries(fields.map((field) => [field.name, fc.oneof({ arbitrary: fieldValue[field.name]!, weight: 40 }, { arbitrary: scalar, weight: 1 })])),
      // Required fields are (almost always) there; optional ones half the time.
      { requiredKeys: fields.filter((field) => String(field.type).endsWith("!")).map((field) => field.name) },
    );
    return fc.tuple(typed, fc.oneof({ arbitrary: fc.constant(undefined), weight: 30 }, { arbitrary: fc.constantFrom("bogus", "tenantId", "limits"), weight: 1 }), scalar).map(
      ([value, extra, extraValue]) => (extra === undefined ? value : { ...value, [extra]: extraValue }),
    );
  };
  const input = fc.constantFrom(...NAMES).chain((name) => inputFor(name).map((value) => [name, value] as const));
  const body = (query: string, variables?: unknown) => JSON.stringify({ query, ...(variables === undefined ? {} : { variables }) });

  // A mutation with its input as a variable (declared, now and then, with another mutation's input type).
  const mutation = fc.tuple(input, fc.constantFrom(...NAMES), fc.integer({ min: 0, max: 9 })).map(([[name, value], declared, dice]) => {
    const [inputType, payload] = MUTATIONS[name];
    const type = dice === 0 ? MUTATIONS[declared][0] : inputType;
    return body(
      `mutation($input: ${type}!) { r: ${name}(input: $input) { __typename ... on MutationError { code } ... on ${payload} { changed } } }`,
      { input: value },
    );
  });
  // A mutation with the input inline, as a literal built from the same values.
  const inline = input.map(([name, value]) => {
    const literal = Object.entries(value)
      .map(([key, v]) => `${key}: ${toLiteral(v)}`)
      .join(", ");
    return body(`mutation { r: ${name}(input: { ${literal} }) { __typename ... on ${MUTATIONS[name][1]} { changed } } }`);
  });
  const query = fc
    .tuple(fc.constantFrom("tenants", "projects", "environments"), fc.oneof(fc.integer({ min: -5, max: 150 }), fc.constant(null)), fc.oneof(fc.string({ maxLength: 10 }), fc.constant(null)), id)
    .map(([field, first, after, tenantId]) =>
      field === "tenants"
        ? body(`query($first: Int, $after: String) { x: tenants(first: $first, after: $after) { nodes { id } pageInfo { endCursor } } }`, { first, after })
        : body(
            `query($first: Int, $after: String, $t: String!) { x: ${field}(tenantId: $t${field === "environments" ? ", projectId: $t" : ""}, first: $first, after: $after) { nodes { id } } }`,
            { first, after, t: tenantId },
          ),
    );
  const tokens = fc
    .array(
      fc.constantFrom("{", "}", "(", ")", "[", "]", "mutation", "query", "subscription", "tenants", "createTenant", "input:", ":", "$x", "first:", "101", '"a"', "...", "on", "fragment", "__typename", "node", "id", "@skip", "!", "name:", "null"),
      { maxLength: 30 },
    )
    .map((parts) => body(parts.join(" "), { x: 1 }));
  const json = fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value));
  const garbage = fc.string({ maxLength: 40 });

  const post = fc.oneof(
    { arbitrary: mutation, weight: 12 },
    { arbitrary: inline, weight: 3 },
    { arbitrary: query, weight: 2 },
    { arbitrary: tokens, weight: 1 },
    { arbitrary: json, weight: 1 },
    { arbitrary: garbage, weight: 1 },
  );
  const get = fc.oneof(mutation, query, tokens).map((payload) => {
    const { query: q, variables } = JSON.parse(payload) as { query: string; variables?: unknown };
    return `query=${encodeURIComponent(q)}${variables === undefined ? "" : `&variables=${encodeURIComponent(JSON.stringify(variables))}`}`;
  });
  // Writes that should succeed, by actors allowed to make them, so that the success path is under the property too.
  const fresh = fc.tuple(fc.stringMatching(/^[a-z0-9]{6,12}$/), fc.stringMatching(/^[a-z][a-z0-9]{5,12}$/));
  const plausible = fc.oneof(
    fc.tuple(fc.constantFrom(actors.platformAdmin(), actors.tenantAdmin(f.a)), fresh).map(([writer, [projectId, name]]) => ({
      actor: writer,
      method: "POST" as const,
      payload: body(`mutation($input: CreateProjectInput!) { r: createProject(input: $input) { __typename ... on ProjectPayload { changed } } }`, {
        input: { tenantId: f.a, projectId: `p${projectId}`, name },
      }),
    })),
    fc.tuple(fc.constantFrom(actors.tenantAdmin(f.a), actors.member(f.a, f.p1)), fresh).map(([writer, [environmentId, name]]) => ({
      actor: writer,
      method: "POST" as const,
      payload: body(`mutation($input: CreateEnvironmentInput!) { r: createEnvironment(input: $input) { __typename ... on EnvironmentPayload { changed } } }`, {
        input: { tenantId: f.a, projectId: f.p1, environmentId: `e${environmentId}`, name },
      }),
    })),
  );
  return fc.oneof(
    { arbitrary: fc.record({ actor, method: fc.constant("POST" as const), payload: post }), weight: 10 },
    { arbitrary: fc.record({ actor, method: fc.constant("GET" as const), payload: get }), weight: 2 },
    { arbitrary: plausible, weight: 1 },
  );
}

function toLiteral(value: unknown): string {
  if (value === null || typeof value !== "object") return typeof value === "number" && !Number.isFinite(value) ? "0" : JSON.stringify(value);
  return `{ ${Object.entries(value).map(([key, v]) => `${key}: ${toLiteral(v)}`).join(", ")} }`;
}

describe("any request to /graphql", () => {
  it("never answers 5xx, always answers JSON, and appends events only for a mutation that reports a change", async () => {
    const seen = new Map<string, number>();
    const count = (outcome: string) => seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
    await fc.assert(
      fc.asyncProperty(requests(), async (request) => {
        const before = await h.eventCount();
        const response =
          request.method === "POST"
            ? await h.app.inject({
                method: "POST",
                url: "/graphql",
                headers: { "content-type": "application/json", ...actorHeader(request.actor) },
                payload: request.payload,
              })
            : await h.app.inject({ method: "GET", url: `/graphql?${request.payload}`, headers: actorHeader(request.actor) });
        expect(response.statusCode, response.body).toBeLessThan(500);
        const body = JSON.parse(response.body) as { data?: Record<string, any> | null; errors?: Array<{ extensions?: { code?: string } }> };
        expect(body.errors?.some((error) => error.extensions?.code === "INTERNAL_SERVER_ERROR") ?? false, response.body).toBe(false);

        const results = Object.values(body.data ?? {});
        const changed = results.some((r) => r && typeof r === "object" && /Payload$/.test(r.__typename) && r.changed === true);
        const accepted = results.some((r) => r && typeof r === "object" && r.__typename === "Accepted");
        const appended = (await h.eventCount()) - before;
        count(changed ? "changed" : `${response.statusCode}:${results.map((r) => r?.__typename ?? "null").join(",")}`);
        if (changed) expect(appended, response.body).toBeGreaterThan(0);
        else if (!accepted) expect(appended, response.body).toBe(0);
      }),
      { numRuns: 300 },
    );
    // The generator must reach every outcome, or the property proves less than it says.
    const outcomes = [...seen.keys()];
    expect(seen.get("changed") ?? 0, JSON.stringify([...seen])).toBeGreaterThan(0);
    for (const typename of ["ValidationFailed", "NotFound", "Forbidden"]) {
      expect(outcomes.some((outcome) => outcome.startsWith("200:") && outcome.includes(typename)), `${typename}: ${JSON.stringify([...seen])}`).toBe(true);
    }
    expect(outcomes.some((outcome) => outcome.startsWith("400:")), JSON.stringify([...seen])).toBe(true);
  }, 300_000);
});
