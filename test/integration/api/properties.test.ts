import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiHarness, type ApiHarness } from "./support/harness.ts";
import { actors, createTestAuth, type RecordedRoute } from "./support/test-auth.ts";

/**
 * Whatever JSON (or not-JSON) arrives at a write route, the API answers
 * without a 5xx; every refusal is an RFC 9457 problem; and a refused request
 * appends nothing to the event log. The write routes are the ones the server
 * registers, so a new write route is covered without touching this file.
 */
describe("write routes under random bodies", () => {
  let h: ApiHarness;
  const routes: RecordedRoute[] = [];
  const admin = actors.platformAdmin();
  let ids: Record<string, string>;

  beforeAll(async () => {
    h = await createApiHarness({ auth: createTestAuth({ routes }) });
    const create = async (url: string, payload: Record<string, unknown>) => {
      const response = await h.call(admin, { method: "POST", url, payload });
      expect(response.statusCode, response.body).toBe(201);
      return JSON.parse(response.body).id as string;
    };
    const tenantId = await create("/v1/tenants", { name: "fuzzed" });
    const projectId = await create(`/v1/tenants/${tenantId}/projects`, { name: "fuzzed" });
    const environmentId = await create(`/v1/tenants/${tenantId}/projects/${projectId}/environments`, { name: "fuzzed" });
    ids = { tenantId, projectId, environmentId };
  });
  afterAll(async () => {
    await h?.dispose();
  });

  /** Near misses: the fields the routes know, with values of any JSON type, plus strangers. */
  const field = fc.oneof(fc.jsonValue(), fc.string({ maxLength: 70 }), fc.constantFrom("", "a", "ok-name", "UPPER", "-x-", "x".repeat(64)));
  const shaped = fc.record(
    {
      id: field,
      name: field,
      displayName: field,
      description: field,
      reason: field,
      limits: fc.oneof(
        field,
        fc.record(
          { vcpus: fc.oneof(fc.integer(), fc.double(), fc.constant(null), field), vms: fc.oneof(fc.integer({ min: -5, max: 5 }), field), gpus: fc.nat() },
          { requiredKeys: [] },
        ),
      ),
      extra: field,
    },
    { requiredKeys: [] },
  );
  /** Bodies of the right shape from a small pool of values, so they collide and reach the domain's rules. */
  const small = fc.constantFrom("a", "b", "c");
  const limit = fc.option(fc.integer({ min: 0, max: 20 }), { nil: null });
  const valid = fc.oneof(
    fc.record({ name: small, id: fc.constantFrom("x1", "x2") }, { requiredKeys: ["name"] }),
    fc.record({ name: small, displayName: fc.option(small, { nil: null }) }, { requiredKeys: [] }),
    fc.record({ reason: small }),
    fc.record({ limits: fc.record({ vcpus: limit, vms: limit }, { requiredKeys: [] }) }),
    fc.constant({}),
  );
  /** Mostly no If-Match; sometimes a version, mostly not the current one. */
  const ifMatch = fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(40) });
  const body = fc.oneof(
    { weight: 3, arbitrary: valid.map((value) => ({ payload: JSON.stringify(value), json: true })) },
    { weight: 3, arbitrary: shaped.map((value) => ({ payload: JSON.stringify(value), json: true })) },
    { weight: 2, arbitrary: fc.jsonValue().map((value) => ({ payload: JSON.stringify(value), json: true })) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map((text) => ({ payload: text, json: true })) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map((text) => ({ payload: text, json: false })) },
  );

  it("never answers 5xx, refuses with problem+json, and appends nothing when it refuses", async () => {
    const writes = [...new Map(routes.filter((r) => r.method !== "GET" && r.method !== "HEAD").map((r) => [`${r.method} ${r.url}`, r])).values()];
    expect(writes.length).toBeGreaterThanOrEqual(10);
    const fill = (url: string) => url.replace(/:(\w+)/g, (_, name: string) => ids[name] ?? `unknown-${name}`);
    const refusals = new Map<string, number>();
    let accepted = 0;

    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...writes), body, ifMatch, async (route, { payload, json }, version) => {
        const before = await h.written();
        const response = await h.call(admin, {
          method: route.method as "POST",
          url: fill(route.url),
          payload,
          headers: { "content-type": json ? "application/json" : "text/plain", ...(version !== null ? { "if-match": `W/"${version}"` } : {}) },
        });
        expect(response.statusCode, `${route.method} ${route.url} ${payload} -> ${response.body}`).toBeLessThan(500);
        if (response.statusCode < 300) accepted++;
        if (response.statusCode >= 400) {
          refusals.set(`${response.statusCode}`, (refusals.get(`${response.statusCode}`) ?? 0) + 1);
          expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
          const problem = JSON.parse(response.body);
          expect(problem).toMatchObject({ status: response.statusCode, code: expect.any(String), title: expect.any(String) });
          expect(problem.type).toBe(`https://dataverket.dev/problems/${problem.code}`);
          expect(await h.written(), "a refused request appended events").toEqual(before);
        }
      }),
      // Enough runs per route that every kind of refusal shows up however many write routes there are.
      { numRuns: Math.max(400, writes.length * 40) },
    );
    // The generator reaches validation, media-type and domain refusals, not only one kind.
    expect(refusals.get("400")).toBeGreaterThan(0);
    expect(refusals.get("415")).toBeGreaterThan(0);
    expect((refusals.get("409") ?? 0) + (refusals.get("422") ?? 0)).toBeGreaterThan(0);
    expect(refusals.get("412")).toBeGreaterThan(0);
    expect(accepted, "some bodies were valid and went through").toBeGreaterThan(0);
  });
});
