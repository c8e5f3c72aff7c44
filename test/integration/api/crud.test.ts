import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { v7 as uuidv7 } from "uuid";
import { parsePosition } from "../../../adapters/eventstore/position.ts";
import { createApiHarness, type ApiHarness } from "./support/harness.ts";
import { actors } from "./support/test-auth.ts";

/** The REST resources end to end on a real database: writes, reads, versions, idempotency, pages. */
describe("REST /v1 against Postgres", () => {
  let h: ApiHarness;
  const admin = actors.platformAdmin();
  const json = (body: string) => JSON.parse(body) as Record<string, any>;

  beforeAll(async () => {
    h = await createApiHarness();
  });
  afterAll(async () => {
    await h?.dispose();
  });

  async function createTenant(name: string, extra: Record<string, unknown> = {}) {
    const response = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name, ...extra } });
    expect(response.statusCode, response.body).toBe(201);
    return json(response.body);
  }

  describe("tenants", () => {
    it("creates with a server-generated UUIDv7 id and answers what the read model shows", async () => {
      const response = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "acme", displayName: "Acme AS" } });
      expect(response.statusCode).toBe(201);
      const tenant = json(response.body);
      expect(tenant).toMatchObject({ name: "acme", displayName: "Acme AS", status: "active", suspendedReason: null });
      expect(tenant.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(response.headers.location).toBe(`/v1/tenants/${tenant.id}`);
      expect(response.headers.etag).toBe('W/"0"');
      expect(response.headers["x-dv-position"]).toMatch(/^\d+\.\d+$/);
      expect(response.headers["content-type"]).toMatch(/^application\/json/);

      // Read-your-writes: the row is in the read model the moment the write answers.
      const row = await h.db.db.withSchema("tenancy").selectFrom("tenants").selectAll().where("tenant_id", "=", tenant.id).executeTakeFirst();
      expect(row).toMatchObject({ name: "acme", stream_version: 0 });

      const read = await h.call(admin, { method: "GET", url: `/v1/tenants/${tenant.id}` });
      expect(read.statusCode).toBe(200);
      expect(json(read.body)).toEqual(tenant);
      expect(read.headers.etag).toBe('W/"0"');
    });

    it("uses a client-supplied id, and answers the same create again with 200 and no new event", async () => {
      const id = `client-${uuidv7()}`;
      const first = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { id, name: "client-id" } });
      expect(first.statusCode).toBe(201);
      expect(json(first.body).id).toBe(id);
      const again = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { id, name: "client-id" } });
      expect(again.statusCode).toBe(200);
      expect(again.headers.etag).toBe('W/"0"');
      for (const bad of ["a/b", "white space", "platform", ""]) {
        const refused = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { id: bad, name: "bad-id" } });
        expect([refused.statusCode, json(refused.body).errors[0].path], bad).toEqual([400, "id"]);
      }
      const clash = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { id, name: "other-name" } });
      expect(clash.statusCode).toBe(409);
      expect(json(clash.body)).toMatchObject({ code: "tenant_exists", type: "https://dataverket.dev/problems/tenant_exists", status: 409 });
      expect((await h.db.store.readStream(`tenant-${id}`)).length).toBe(1);
    });

    it("renames (name, displayName, or displayName alone), suspends and resumes", async () => {
      const tenant = await createTenant("rename-me", { displayName: "Old" });
      const url = `/v1/tenants/${tenant.id}`;

      const renamed = await h.call(admin, { method: "PATCH", url, payload: { name: "renamed" } });
      expect(renamed.statusCode).toBe(200);
      expect(json(renamed.body)).toMatchObject({ name: "renamed", displayName: "Old" });
      expect(renamed.headers.etag).toBe('W/"1"');

      const display = await h.call(admin, { method: "PATCH", url, payload: { displayName: "New" } });
      expect(json(display.body)).toMatchObject({ name: "renamed", displayName: "New" });
      const cleared = await h.call(admin, { method: "PATCH", url, payload: { displayName: null } });
      expect(json(cleared.body)).toMatchObject({ name: "renamed", displayName: null });
      expect(cleared.headers.etag).toBe('W/"3"');

      const empty = await h.call(admin, { method: "PATCH", url, payload: {} });
      expect(empty.statusCode).toBe(400);

      const suspended = await h.call(admin, { method: "POST", url: `${url}/suspend`, payload: { reason: "unpaid invoices" } });
      expect(suspended.statusCode).toBe(200);
      expect(json(suspended.body)).toMatchObject({ status: "suspended", suspendedReason: "unpaid invoices" });

      const refused = await h.call(admin, { method: "POST", url: `${url}/projects`, payload: { name: "web" } });
      expect(refused.statusCode).toBe(409);
      expect(json(refused.body).code).toBe("tenant_suspended");

      const resumed = await h.call(admin, { method: "POST", url: `${url}/resume` });
      expect(resumed.statusCode).toBe(200);
      expect(json(resumed.body)).toMatchObject({ status: "active", suspendedReason: null });
      const resumedAgain = await h.call(admin, { method: "POST", url: `${url}/resume`, payload: {} });
      expect(resumedAgain.statusCode).toBe(200);
      expect(resumedAgain.headers.etag).toBe(resumed.headers.etag);
    });

    it("answers 404 problems for tenants that do not exist", async () => {
      for (const [method, url, payload] of [
        ["GET", "/v1/tenants/nope", undefined],
        ["PATCH", "/v1/tenants/nope", { name: "x" }],
        ["PATCH", "/v1/tenants/nope", { displayName: "x" }],
        ["POST", "/v1/tenants/nope/suspend", { reason: "r" }],
        ["GET", "/v1/tenants/nope/projects", undefined],
        ["POST", "/v1/tenants/nope/projects", { name: "p" }],
        ["GET", "/v1/tenants/nope/quota", undefined],
      ] as const) {
        const response = await h.call(admin, { method, url, ...(payload ? { payload } : {}) });
        expect(response.statusCode, `${method} ${url}`).toBe(404);
        expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(json(response.body).code).toBe("tenant_not_found");
      }
    });
  });

  describe("projects, environments and quotas", () => {
    it("walks the tree: create, list, get, archive with the domain's rules", async () => {
      const tenant = await createTenant("tree");
      const base = `/v1/tenants/${tenant.id}`;
      const project = json((await h.call(admin, { method: "POST", url: `${base}/projects`, payload: { name: "web", description: "the site" } })).body);
      expect(project).toMatchObject({ tenantId: tenant.id, name: "web", description: "the site", status: "active" });

      const env = await h.call(admin, { method: "POST", url: `${base}/projects/${project.id}/environments`, payload: { name: "prod" } });
      expect(env.statusCode).toBe(201);
      const environment = json(env.body);
      expect(environment).toMatchObject({ tenantId: tenant.id, projectId: project.id, name: "prod", status: "active" });
      expect(env.headers.location).toBe(`${base}/projects/${project.id}/environments/${environment.id}`);

      const taken = await h.call(admin, { method: "POST", url: `${base}/projects`, payload: { name: "web" } });
      expect(taken.statusCode).toBe(409);
      expect(json(taken.body)).toMatchObject({ code: "project_name_taken", details: expect.any(Object) });

      const blocked = await h.call(admin, { method: "POST", url: `${base}/projects/${project.id}/archive` });
      expect(blocked.statusCode).toBe(409);
      expect(json(blocked.body).code).toBe("project_has_active_environments");

      const archivedEnv = await h.call(admin, { method: "POST", url: `${base}/projects/${project.id}/environments/${environment.id}/archive` });
      expect(json(archivedEnv.body).status).toBe("archived");
      const archived = await h.call(admin, { method: "POST", url: `${base}/projects/${project.id}/archive`, payload: {} });
      expect(archived.statusCode).toBe(200);
      expect(json(archived.body).status).toBe("archived");

      const envs = json((await h.call(admin, { method: "GET", url: `${base}/projects/${project.id}/environments` })).body);
      expect(envs.items.map((e: any) => [e.name, e.status])).toEqual([["prod", "archived"]]);
      expect(envs.nextCursor).toBeNull();

      const active = json((await h.call(admin, { method: "GET", url: `${base}/projects?status=active` })).body);
      expect(active.items).toEqual([]);
      const byName = json((await h.call(admin, { method: "GET", url: `${base}/projects?name=web` })).body);
      expect(byName.items.map((p: any) => p.id)).toEqual([project.id]);

      const missing = await h.call(admin, { method: "GET", url: `${base}/projects/${project.id}/environments/nope` });
      expect(json(missing.body).code).toBe("environment_not_found");
    });

    it("GETs and PUTs quotas with PUT replacing the whole quota and the domain's limits enforced", async () => {
      const tenant = await createTenant("quotas");
      const base = `/v1/tenants/${tenant.id}`;
      const project = json((await h.call(admin, { method: "POST", url: `${base}/projects`, payload: { name: "p" } })).body);

      const none = await h.call(admin, { method: "GET", url: `${base}/quota` });
      expect(json(none.body)).toEqual({
        scope: "tenant",
        tenantId: tenant.id,
        projectId: null,
        limits: { vcpus: null, memoryMiB: null, vms: null, hosts: null, networks: null, buckets: null },
        updatedAt: null,
      });

      const set = await h.call(admin, { method: "PUT", url: `${base}/quota`, payload: { limits: { vcpus: 16, vms: 4 } } });
      expect(set.statusCode).toBe(200);
      expect(json(set.body).limits).toMatchObject({ vcpus: 16, vms: 4, memoryMiB: null });

      const over = await h.call(admin, { method: "PUT", url: `${base}/projects/${project.id}/quota`, payload: { limits: { vcpus: 32 } } });
      expect(over.statusCode).toBe(422);
      expect(json(over.body).code).toBe("quota_exceeds_tenant_limit");

      const ok = await h.call(admin, { method: "PUT", url: `${base}/projects/${project.id}/quota`, payload: { limits: { vcpus: 8 } } });
      expect(json(ok.body)).toMatchObject({ scope: "project", projectId: project.id, limits: { vcpus: 8, vms: null } });

      // PUT replaces: vms is no longer named, so it is cleared.
      const replaced = await h.call(admin, { method: "PUT", url: `${base}/quota`, payload: { limits: { vcpus: 10 } } });
      expect(json(replaced.body).limits).toMatchObject({ vcpus: 10, vms: null });
      const below = await h.call(admin, { method: "PUT", url: `${base}/quota`, payload: { limits: { vcpus: 4 } } });
      expect(below.statusCode).toBe(422);
      expect(json(below.body)).toMatchObject({ code: "quota_below_project_limit", status: 422 });

      const bad = await h.call(admin, { method: "PUT", url: `${base}/quota`, payload: { limits: { vcpus: -1, gpus: 2 } } });
      expect(bad.statusCode).toBe(400);
      expect(json(bad.body).errors.map((e: any) => e.path).sort()).toEqual(["limits.gpus", "limits.vcpus"]);
    });
  });

  describe("errors", () => {
    it("lists every failing field of a body as problem+json", async () => {
      const response = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { id: "", name: "Not_A_Label", displayName: 7, color: "red" } });
      expect(response.statusCode).toBe(400);
      expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
      const problem = json(response.body);
      expect(problem).toMatchObject({
        type: "https://dataverket.dev/problems/validation_failed",
        title: expect.any(String),
        status: 400,
        code: "validation_failed",
        instance: "/v1/tenants",
        detail: expect.any(String),
      });
      expect(problem.errors.map((e: any) => e.path).sort()).toEqual(["color", "displayName", "id", "name"]);
      expect(problem.errors.every((e: any) => e.in === "body" && typeof e.message === "string")).toBe(true);
    });

    it("answers malformed JSON, wrong media types and unknown routes with problems", async () => {
      const malformed = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: "{\"name\":", headers: { "content-type": "application/json" } });
      expect([malformed.statusCode, json(malformed.body).code]).toEqual([400, "malformed_body"]);
      const text = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: "name=x", headers: { "content-type": "text/plain" } });
      expect([text.statusCode, json(text.body).code]).toEqual([415, "unsupported_media_type"]);
      const route = await h.call(admin, { method: "GET", url: "/v1/nothing-here" });
      expect([route.statusCode, json(route.body).code]).toEqual([404, "route_not_found"]);
      expect(route.headers["content-type"]).toMatch(/^application\/problem\+json/);
    });

    it("carries the client's correlation id into the response, the problem and the events", async () => {
      const correlationId = `corr-${uuidv7()}`;
      const response = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "correlated" }, headers: { "x-correlation-id": correlationId } });
      expect(response.headers["x-correlation-id"]).toBe(correlationId);
      const [event] = await h.db.store.readStream(`tenant-${json(response.body).id}`);
      expect(event).toMatchObject({ correlationId, actor: { kind: "user", id: admin.id } });

      const refused = await h.call(admin, { method: "GET", url: "/v1/tenants/none", headers: { "x-correlation-id": correlationId } });
      expect(json(refused.body).correlationId).toBe(correlationId);

      const generated = await h.call(admin, { method: "GET", url: "/v1/tenants", headers: { "x-correlation-id": "has spaces" } });
      expect(generated.headers["x-correlation-id"]).toMatch(/^[0-9a-f-]{36}$/);
    });
  });

  describe("ETag and If-Match", () => {
    it("pins writes to the version in If-Match: 412 when the tenant moved on, nothing appended", async () => {
      const tenant = await createTenant("pinned");
      const url = `/v1/tenants/${tenant.id}`;
      const etag = (await h.call(admin, { method: "GET", url })).headers.etag as string;
      expect(etag).toBe('W/"0"');

      const ok = await h.call(admin, { method: "PATCH", url, payload: { name: "pinned-2" }, headers: { "if-match": etag } });
      expect(ok.statusCode).toBe(200);
      expect(ok.headers.etag).toBe('W/"1"');

      const head = await h.written();
      const stale = await h.call(admin, { method: "PATCH", url, payload: { name: "pinned-3" }, headers: { "if-match": etag } });
      expect(stale.statusCode).toBe(412);
      expect(json(stale.body)).toMatchObject({ code: "precondition_failed", details: { expectedVersion: 0, currentVersion: 1 } });
      const staleDisplay = await h.call(admin, { method: "PATCH", url, payload: { displayName: "x" }, headers: { "if-match": etag } });
      expect(staleDisplay.statusCode).toBe(412);
      const staleProject = await h.call(admin, { method: "POST", url: `${url}/projects`, payload: { name: "p" }, headers: { "if-match": etag } });
      expect(staleProject.statusCode).toBe(412);
      expect(await h.written()).toEqual(head);

      const strong = await h.call(admin, { method: "POST", url: `${url}/projects`, payload: { name: "p" }, headers: { "if-match": '"1"' } });
      expect(strong.statusCode).toBe(201);
      expect(strong.headers.etag).toBe('W/"2"');

      const garbage = await h.call(admin, { method: "PATCH", url, payload: { name: "x" }, headers: { "if-match": 'W/"1", W/"2"' } });
      expect([garbage.statusCode, json(garbage.body).code]).toEqual([400, "invalid_if_match"]);
    });

    it("answers 304 to If-None-Match with the current ETag", async () => {
      const tenant = await createTenant("cached");
      const url = `/v1/tenants/${tenant.id}`;
      const first = await h.call(admin, { method: "GET", url });
      const again = await h.call(admin, { method: "GET", url, headers: { "if-none-match": first.headers.etag as string } });
      expect(again.statusCode).toBe(304);
      expect(again.body).toBe("");
      await h.call(admin, { method: "PATCH", url, payload: { name: "cached-2" } });
      const changed = await h.call(admin, { method: "GET", url, headers: { "if-none-match": first.headers.etag as string } });
      expect(changed.statusCode).toBe(200);
    });
  });

  describe("Idempotency-Key", () => {
    it("replays the first response for the same key and body, and refuses another body", async () => {
      const key = `key-${uuidv7()}`;
      const first = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "idem" }, headers: { "idempotency-key": key } });
      expect(first.statusCode).toBe(201);
      const head = await h.written();

      const replay = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "idem" }, headers: { "idempotency-key": key } });
      expect(replay.statusCode).toBe(201);
      expect(replay.body).toBe(first.body);
      expect(replay.headers["idempotency-replayed"]).toBe("true");
      for (const name of ["etag", "location", "x-dv-position", "content-type"]) expect(replay.headers[name]).toBe(first.headers[name]);
      expect(await h.written()).toEqual(head);

      const other = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "idem-other" }, headers: { "idempotency-key": key } });
      expect(other.statusCode).toBe(422);
      expect(json(other.body).code).toBe("idempotency_key_reused");

      // Keys belong to the actor: another admin's identical key is a different request.
      const otherAdmin = actors.platformAdmin("root-2");
      const theirs = await h.call(otherAdmin, { method: "POST", url: "/v1/tenants", payload: { name: "idem" }, headers: { "idempotency-key": key } });
      expect(theirs.statusCode).toBe(201);
      expect(json(theirs.body).id).not.toBe(json(first.body).id);

      const bad = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "idem" }, headers: { "idempotency-key": "" } });
      expect([bad.statusCode, json(bad.body).code]).toEqual([400, "invalid_idempotency_key"]);
    });

    it("replays refusals too, and lets concurrent duplicates create exactly one resource", async () => {
      const tenant = await createTenant("idem-tree");
      const url = `/v1/tenants/${tenant.id}/projects`;
      const taken = `key-${uuidv7()}`;
      await h.call(admin, { method: "POST", url, payload: { name: "dup" } });
      const refused = await h.call(admin, { method: "POST", url, payload: { name: "dup" }, headers: { "idempotency-key": taken } });
      expect(refused.statusCode).toBe(409);
      const refusedAgain = await h.call(admin, { method: "POST", url, payload: { name: "dup" }, headers: { "idempotency-key": taken } });
      expect([refusedAgain.statusCode, refusedAgain.headers["idempotency-replayed"]]).toEqual([409, "true"]);

      const key = `key-${uuidv7()}`;
      const racing = await Promise.all(
        Array.from({ length: 5 }, () => h.call(admin, { method: "POST", url, payload: { name: "raced" }, headers: { "idempotency-key": key } })),
      );
      const statuses = racing.map((r) => r.statusCode).sort();
      expect(statuses.filter((s) => s === 201).length).toBeGreaterThanOrEqual(1);
      expect(statuses.every((s) => s === 201 || s === 409)).toBe(true);
      for (const r of racing.filter((r) => r.statusCode === 409)) expect(json(r.body).code).toBe("idempotency_key_in_use");
      const projects = json((await h.call(admin, { method: "GET", url: `${url}?name=raced` })).body);
      expect(projects.items).toHaveLength(1);
    });

    it("expires keys after their time to live", async () => {
      const key = `key-${uuidv7()}`;
      const first = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "expiring" }, headers: { "idempotency-key": key } });
      await h.db.pool.query("update api.idempotency_keys set expires_at = now() - interval '1 second' where key = $1", [key]);
      const later = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "expiring-2" }, headers: { "idempotency-key": key } });
      expect(later.statusCode).toBe(201);
      expect(json(later.body).id).not.toBe(json(first.body).id);
    });
  });

  describe("pagination", () => {
    it("walks more rows than a page in a stable order, each row exactly once, with filters applied in SQL", async () => {
      const tenant = await createTenant("paged");
      const base = `/v1/tenants/${tenant.id}/projects`;
      const names = Array.from({ length: 23 }, (_, i) => `p-${String(i).padStart(2, "0")}`);
      for (const name of names) {
        const response = await h.call(admin, { method: "POST", url: base, payload: { name } });
        expect(response.statusCode).toBe(201);
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const url: string = `${base}?limit=5${cursor ? `&cursor=${cursor}` : ""}`;
        const page = json((await h.call(admin, { method: "GET", url })).body);
        expect(page.items.length).toBeLessThanOrEqual(5);
        seen.push(...page.items.map((p: any) => p.id));
        cursor = page.nextCursor;
        pages++;
        if (pages === 2) {
          // A rename during the walk does not move rows between pages (ordered by id).
          await h.call(admin, { method: "POST", url: `${base}/${page.items[0].id}/archive` });
        }
      } while (cursor);
      expect(pages).toBe(5);
      expect(new Set(seen).size).toBe(23);
      expect(seen).toEqual([...seen].sort());

      const exact = json((await h.call(admin, { method: "GET", url: `${base}?limit=23` })).body);
      expect([exact.items.length, exact.nextCursor]).toEqual([23, null]);

      for (const [query, code] of [
        ["limit=0", "validation_failed"],
        ["limit=201", "validation_failed"],
        ["cursor=%%%", "invalid_cursor"],
        [`cursor=${Buffer.from(JSON.stringify({ l: "tenants", k: "x" })).toString("base64url")}`, "invalid_cursor"],
      ]) {
        const response = await h.call(admin, { method: "GET", url: `${base}?${query}` });
        expect([response.statusCode, json(response.body).code], query).toEqual([400, code]);
      }
    });
  });

  describe("read-your-writes", () => {
    it("waits for ?minPosition, and answers 504 when the read model cannot reach it in time", async () => {
      const tenant = await createTenant("ryw");
      const position = (await h.call(admin, { method: "PATCH", url: `/v1/tenants/${tenant.id}`, payload: { name: "ryw-2" } })).headers["x-dv-position"] as string;
      const read = await h.call(admin, { method: "GET", url: `/v1/tenants/${tenant.id}?minPosition=${position}` });
      expect([read.statusCode, json(read.body).name]).toEqual([200, "ryw-2"]);

      const fast = await createApiHarness({ readYourWrites: { readWaitMs: 100 } });
      try {
        const far = await fast.call(admin, { method: "GET", url: `/v1/tenants?minPosition=99999999999.1` });
        expect(far.statusCode).toBe(504);
        expect(json(far.body).code).toBe("projection_lagging");
        const bad = await fast.call(admin, { method: "GET", url: `/v1/tenants?minPosition=yesterday` });
        expect([bad.statusCode, json(bad.body).errors[0].path]).toEqual([400, "minPosition"]);
      } finally {
        await fast.dispose();
      }
    });

    it("answers 202 with where to read when the read model does not catch up in time", async () => {
      const slow = await createApiHarness({ readYourWrites: { writeWaitMs: 1 } });
      try {
        await slow.runner.stop();
        const response = await slow.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "later" } });
        expect(response.statusCode).toBe(202);
        const body = json(response.body);
        expect(body).toMatchObject({ status: "accepted", position: response.headers["x-dv-position"] });
        expect(response.headers.location).toBe(body.location);
        await slow.runner.start();
        const read = await slow.call(admin, { method: "GET", url: `${body.location}?minPosition=${body.position}` });
        expect([read.statusCode, json(read.body).name]).toEqual([200, "later"]);
      } finally {
        await slow.dispose();
      }
    });
  });

  describe("operations", () => {
    it("serves /healthz, /readyz with details and /metrics with request, append and lag metrics", async () => {
      expect((await h.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
      const ready = await h.app.inject({ method: "GET", url: "/readyz" });
      expect(ready.statusCode).toBe(200);
      expect(json(ready.body)).toMatchObject({
        status: "ready",
        checks: { postgres: { ok: true }, projections: { ok: true, items: [{ name: "tenancy", ok: true }, { name: "tasks", ok: true }, { name: "inventory", ok: true }, { name: "maskin_vms", ok: true }] } },
      });
      const metrics = await h.app.inject({ method: "GET", url: "/metrics" });
      expect(metrics.statusCode).toBe(200);
      expect(metrics.body).toMatch(/dv_http_requests_total\{method="POST",route="\/v1\/tenants",status="201"\} \d+/);
      expect(metrics.body).toMatch(/dv_http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/v1\/tenants\/:tenantId",status="200"\}/);
      expect(metrics.body).toMatch(/dv_events_appended_total\{type="TenantCreated"\} \d+/);
      expect(metrics.body).toMatch(/dv_projection_lag_events\{projection="tenancy"\} \d+/);
      expect(metrics.body).toMatch(/dv_projection_state\{projection="tenancy",state="live"\} 1/);
    });

    it("reports not ready (503) when the projection lags beyond the bound", async () => {
      const lagging = await createApiHarness({ readiness: { maxLagMs: 0 }, readYourWrites: { writeWaitMs: 1 } });
      try {
        await lagging.runner.stop();
        const write = await lagging.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "lag" } });
        // Readable by the log's readers (other files' open transactions on the shared server can delay it).
        await lagging.db.store.waitUntilReadable(parsePosition(write.headers["x-dv-position"] as string), 20_000);
        await new Promise((resolve) => setTimeout(resolve, 5));
        const ready = await lagging.app.inject({ method: "GET", url: "/readyz" });
        expect(ready.statusCode).toBe(503);
        expect(json(ready.body)).toMatchObject({ status: "not_ready", checks: { postgres: { ok: true }, projections: { ok: false } } });
      } finally {
        await lagging.dispose();
      }
    });

    it("logs through pino with the correlation id on every line of a request, and 5xx without leaking the cause", async () => {
      const lines: Array<Record<string, any>> = [];
      const stream = { write: (line: string) => void lines.push(JSON.parse(line)) };
      const logged = await createApiHarness({ logger: { level: "info", stream } });
      try {
        const correlationId = `log-${uuidv7()}`;
        await logged.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "logged" }, headers: { "x-correlation-id": correlationId } });
        const mine = lines.filter((line) => line.correlationId === correlationId);
        expect(mine.map((line) => line.msg)).toEqual(expect.arrayContaining(["incoming request", "command ran", "request completed"]));
        expect(mine.find((line) => line.msg === "command ran")).toMatchObject({ command: "CreateTenant", appended: 1 });

        // An unexpected error: a 500 problem that names only the correlation id; the log has the cause.
        const original = logged.db.store.readStream.bind(logged.db.store);
        logged.db.store.readStream = async () => {
          throw new Error("disk on fire at /var/lib/secret");
        };
        try {
          const failing = await logged.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "boom" }, headers: { "x-correlation-id": `${correlationId}-2` } });
          expect(failing.statusCode).toBe(500);
          expect(failing.headers["content-type"]).toMatch(/^application\/problem\+json/);
          const problem = json(failing.body);
          expect(problem).toMatchObject({ code: "internal_error", status: 500, correlationId: `${correlationId}-2` });
          expect(failing.body).not.toMatch(/disk on fire|secret|at .*\.ts/);
          const errorLine = lines.find((line) => line.correlationId === `${correlationId}-2` && line.level >= 50);
          expect(errorLine?.err?.message).toBe("disk on fire at /var/lib/secret");
        } finally {
          logged.db.store.readStream = original;
        }
      } finally {
        await logged.dispose();
      }
    });

    it("rate limits per actor with a 429 problem and Retry-After", async () => {
      const limited = await createApiHarness({ rateLimit: { max: 3, timeWindow: 60_000 } });
      try {
        const alice = actors.auditor(undefined, "alice");
        const statuses = [];
        for (let i = 0; i < 4; i++) statuses.push((await limited.call(alice, { method: "GET", url: "/v1/tenants" })).statusCode);
        expect(statuses).toEqual([200, 200, 200, 429]);
        const over = await limited.call(alice, { method: "GET", url: "/v1/tenants" });
        expect(over.headers["retry-after"]).toMatch(/^\d+$/);
        expect(over.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(json(over.body)).toMatchObject({ status: 429, code: "rate_limited" });
        // Another actor has its own budget; probes are not limited.
        expect((await limited.call(actors.auditor(undefined, "bob"), { method: "GET", url: "/v1/tenants" })).statusCode).toBe(200);
        for (let i = 0; i < 5; i++) expect((await limited.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
      } finally {
        await limited.dispose();
      }
    });
  });
});
