import { afterAll, beforeAll, describe, expect, it } from "vitest";
// ajv is fastify's own validator (a dependency of fastify, not of this project directly).
import Ajv2020Module from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { createApiHarness, type ApiHarness } from "./support/harness.ts";
import { actors, createTestAuth, type RecordedRoute } from "./support/test-auth.ts";

const Ajv2020 = Ajv2020Module as unknown as typeof Ajv2020Module.default;
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

/** Routes deliberately left out of the document (see api/openapi.ts). */
const INTERNAL = new Set(["/healthz", "/readyz", "/metrics", "/v1/openapi.json"]);
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;

/**
 * The structure OpenAPI 3.1 requires of a document, as far as this API uses
 * it: the OAS 3.1 rules for the root, info, paths, operations, parameters,
 * request bodies, responses, media types, headers, components and security
 * schemes. (The official OAS 3.1 JSON Schema is not in node_modules; Schema
 * Objects are checked separately against the JSON Schema 2020-12 meta-schema,
 * which is what OAS 3.1 says they are.)
 */
const ref = { type: "object", required: ["$ref"], properties: { $ref: { type: "string" } } };
const OAS_31_STRUCTURE = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  required: ["openapi", "info", "paths"],
  properties: {
    openapi: { type: "string", pattern: "^3\\.1\\.\\d+(-.+)?$" },
    info: {
      type: "object",
      required: ["title", "version"],
      properties: { title: { type: "string" }, version: { type: "string" }, description: { type: "string" } },
    },
    jsonSchemaDialect: { type: "string", format: "uri" },
    servers: { type: "array", items: { type: "object", required: ["url"] } },
    paths: {
      type: "object",
      propertyNames: { pattern: "^/" },
      additionalProperties: { $ref: "#/$defs/pathItem" },
    },
    components: {
      type: "object",
      properties: {
        schemas: { type: "object", additionalProperties: { type: ["object", "boolean"] } },
        securitySchemes: { type: "object", additionalProperties: { $ref: "#/$defs/securityScheme" } },
        responses: { type: "object", additionalProperties: { $ref: "#/$defs/response" } },
      },
    },
    security: { type: "array", items: { $ref: "#/$defs/securityRequirement" } },
    tags: { type: "array", items: { type: "object", required: ["name"], properties: { name: { type: "string" } } } },
  },
  patternProperties: { "^x-": true },
  additionalProperties: false,
  $defs: {
    pathItem: {
      type: "object",
      properties: Object.fromEntries(METHODS.map((m) => [m, { $ref: "#/$defs/operation" }])),
      patternProperties: { "^x-": true },
      additionalProperties: false,
    },
    operation: {
      type: "object",
      required: ["responses"],
      properties: {
        operationId: { type: "string" },
        summary: { type: "string" },
        description: { type: "string" },
        tags: { type: "array", items: { type: "string" } },
        parameters: { type: "array", items: { anyOf: [ref, { $ref: "#/$defs/parameter" }] } },
        requestBody: { anyOf: [ref, { $ref: "#/$defs/requestBody" }] },
        responses: {
          type: "object",
          minProperties: 1,
          propertyNames: { pattern: "^([1-5](\\d\\d|XX)|default)$" },
          additionalProperties: { anyOf: [ref, { $ref: "#/$defs/response" }] },
        },
        security: { type: "array", items: { $ref: "#/$defs/securityRequirement" } },
        deprecated: { type: "boolean" },
      },
      patternProperties: { "^x-": true },
      additionalProperties: false,
    },
    parameter: {
      type: "object",
      required: ["name", "in"],
      properties: {
        name: { type: "string" },
        in: { enum: ["query", "header", "path", "cookie"] },
        required: { type: "boolean" },
        description: { type: "string" },
        schema: { type: ["object", "boolean"] },
        content: { type: "object", minProperties: 1, maxProperties: 1 },
      },
      oneOf: [{ required: ["schema"] }, { required: ["content"] }],
      if: { properties: { in: { const: "path" } } },
      then: { required: ["required"], properties: { required: { const: true } } },
      patternProperties: { "^x-": true },
      additionalProperties: false,
    },
    requestBody: {
      type: "object",
      required: ["content"],
      properties: { content: { $ref: "#/$defs/content" }, required: { type: "boolean" }, description: { type: "string" } },
      additionalProperties: false,
    },
    response: {
      type: "object",
      required: ["description"],
      properties: {
        description: { type: "string" },
        headers: { type: "object", additionalProperties: { anyOf: [ref, { $ref: "#/$defs/header" }] } },
        content: { $ref: "#/$defs/content" },
      },
      patternProperties: { "^x-": true },
      additionalProperties: false,
    },
    header: {
      type: "object",
      properties: { description: { type: "string" }, schema: { type: ["object", "boolean"] }, required: { type: "boolean" } },
      oneOf: [{ required: ["schema"] }, { required: ["content"] }],
      not: { anyOf: [{ required: ["name"] }, { required: ["in"] }] },
    },
    content: {
      type: "object",
      propertyNames: { pattern: "^[a-z*]+/[-+.a-z0-9*]+$" },
      additionalProperties: {
        type: "object",
        properties: { schema: { type: ["object", "boolean"] }, example: true, examples: { type: "object" } },
        additionalProperties: false,
      },
    },
    securityScheme: {
      type: "object",
      required: ["type"],
      properties: { type: { enum: ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"] } },
      if: { properties: { type: { const: "http" } } },
      then: { required: ["scheme"], properties: { scheme: { type: "string" }, bearerFormat: { type: "string" } } },
    },
    securityRequirement: { type: "object", additionalProperties: { type: "array", items: { type: "string" } } },
  },
};

describe("the OpenAPI document", () => {
  let h: ApiHarness;
  let doc: Record<string, any>;
  const routes: RecordedRoute[] = [];

  beforeAll(async () => {
    h = await createApiHarness({
      auth: createTestAuth({ routes }),
      // A plugin route with a plain JSON schema, as mercurius registers /graphql: validated by fastify's
      // own compiler (the zod compilers belong to /v1 only) and documented as it is.
      graphql: {
        async register(app) {
          app.post(
            "/graphql",
            { schema: { body: { type: "object", required: ["query"], properties: { query: { type: "string" } } } } },
            async (request) => ({ data: { echo: (request.body as { query: string }).query } }),
          );
        },
      },
    });
    const response = await h.app.inject({ method: "GET", url: "/v1/openapi.json" });
    expect(response.statusCode).toBe(200);
    doc = JSON.parse(response.body);
  });
  afterAll(async () => {
    await h?.dispose();
  });

  it("is an OpenAPI 3.1 document in structure", () => {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    addFormats(ajv);
    const validate = ajv.compile(OAS_31_STRUCTURE);
    const ok = validate(doc);
    expect(validate.errors ?? [], JSON.stringify(validate.errors?.slice(0, 5), null, 1)).toEqual([]);
    expect(ok).toBe(true);
    expect(doc.openapi).toBe("3.1.0");

    // The check has teeth: the mistakes it exists for are refused.
    const broken = (mutate: (copy: any) => void) => {
      const copy = JSON.parse(JSON.stringify(doc));
      mutate(copy);
      return validate(copy);
    };
    expect(broken((d) => (d.openapi = "3.0.3"))).toBe(false);
    expect(broken((d) => delete d.paths["/v1/tenants"].get.responses["200"].description)).toBe(false);
    expect(broken((d) => (d.paths["/v1/tenants/{tenantId}"].get.parameters.find((p: any) => p.in === "path").required = false))).toBe(false);
    expect(broken((d) => (d.paths["/v1/tenants"].get.responses["2xx"] = { description: "x" }))).toBe(false);
    expect(broken((d) => (d.paths["tenants"] = {}))).toBe(false);
  });

  it("has Schema Objects that are valid JSON Schema 2020-12, and every $ref resolves", () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: true });
    addFormats(ajv);
    const schemas: Array<[string, unknown]> = [];
    const refs: string[] = [];
    const collect = (value: unknown, where: string): void => {
      if (Array.isArray(value)) value.forEach((item, i) => collect(item, `${where}[${i}]`));
      else if (value && typeof value === "object") {
        for (const [key, inner] of Object.entries(value)) {
          if (key === "schema") schemas.push([`${where}.schema`, inner]);
          if (key === "$ref" && typeof inner === "string") refs.push(inner);
          collect(inner, `${where}.${key}`);
        }
      }
    };
    collect(doc.paths, "paths");
    for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) schemas.push([`components.schemas.${name}`, schema]);
    expect(schemas.length).toBeGreaterThan(50);

    for (const [where, schema] of schemas) {
      const resolved = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', '"#/$defs/'));
      const ok = ajv.validateSchema({ ...resolved, $defs: { ...doc.components.schemas } });
      expect(ok, `${where}: ${JSON.stringify(ajv.errors)}`).toBe(true);
    }
    for (const target of refs) {
      expect(target.startsWith("#/"), target).toBe(true);
      const found = target
        .slice(2)
        .split("/")
        .reduce<any>((node, part) => node?.[part.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
      expect(found, `unresolved $ref ${target}`).toBeDefined();
    }
  });

  it("names every path parameter of a template, has unique operationIds and known security schemes", () => {
    const operationIds = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths as Record<string, any>)) {
      const variables = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
      for (const method of METHODS) {
        const operation = item[method];
        if (!operation) continue;
        const declared = (operation.parameters ?? []).filter((p: any) => p.in === "path").map((p: any) => p.name).sort();
        expect(declared, `${method} ${path}`).toEqual(variables);
        // Every REST operation has an id (plugins' routes may not); ids are unique (OAS requires it).
        if (path.startsWith("/v1/")) expect(operation.operationId, `${method} ${path}`).toEqual(expect.any(String));
        if (operation.operationId !== undefined) {
          expect(operationIds.has(operation.operationId), `duplicate ${operation.operationId}`).toBe(false);
          operationIds.add(operation.operationId);
        }
        for (const requirement of operation.security ?? doc.security ?? []) {
          for (const scheme of Object.keys(requirement)) expect(doc.components.securitySchemes[scheme], scheme).toBeDefined();
        }
      }
    }
    expect(doc.components.securitySchemes.bearer).toEqual({ type: "http", scheme: "bearer", bearerFormat: "JWT" });
    expect(doc.security).toEqual([{ bearer: [] }]);
  });

  it("documents every registered route except the internal ones", () => {
    const registered = routes.filter((r) => r.method !== "HEAD" && !INTERNAL.has(r.url));
    expect(registered.length).toBeGreaterThanOrEqual(18);
    const missing = registered.filter((r) => !doc.paths[r.url.replace(/:(\w+)/g, "{$1}")]?.[r.method.toLowerCase()]);
    expect(missing).toEqual([]);
    for (const internal of INTERNAL) expect(doc.paths[internal], internal).toBeUndefined();
  });

  it("marks a request body required exactly where the route requires one", () => {
    expect(doc.paths["/v1/tenants"].post.requestBody.required).toBe(true);
    expect(doc.paths["/v1/tenants/{tenantId}/suspend"].post.requestBody.required).toBe(true);
    expect(doc.paths["/v1/tenants/{tenantId}/resume"].post.requestBody.required).toBe(false);
    expect(doc.paths["/v1/tenants/{tenantId}/projects/{projectId}/archive"].post.requestBody.required).toBe(false);
  });

  it("documents plugins' routes with plain JSON schemas as they are, and validates them with fastify's compiler", async () => {
    expect(doc.paths["/graphql"].post.requestBody.content["application/json"].schema).toMatchObject({ required: ["query"] });
    const ok = await h.app.inject({ method: "POST", url: "/graphql", payload: { query: "{ x }" } });
    expect([ok.statusCode, JSON.parse(ok.body)]).toEqual([200, { data: { echo: "{ x }" } }]);
    const bad = await h.app.inject({ method: "POST", url: "/graphql", payload: { nope: 1 } });
    expect(bad.statusCode).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ code: "validation_failed", errors: [{ path: "query", in: "body" }] });
  });

  it("documents problem responses as application/problem+json with the Problem schema", () => {
    const problem = doc.components.schemas.Problem;
    expect(problem.required).toEqual(expect.arrayContaining(["type", "title", "status", "code"]));
    for (const [path, item] of Object.entries(doc.paths as Record<string, any>)) {
      for (const method of METHODS) {
        const responses = item[method]?.responses;
        if (!responses || path === "/graphql") continue;
        expect(Object.keys(responses), `${method} ${path}`).toEqual(expect.arrayContaining(["401", "429", "500"]));
        for (const [status, response] of Object.entries(responses as Record<string, any>)) {
          if (Number(status) >= 400) {
            expect(response.content, `${method} ${path} ${status}`).toEqual({
              "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } },
            });
          }
        }
      }
    }
  });

  it("describes what the server actually answers (responses validate against their documented schemas)", async () => {
    const ajv = new Ajv2020({ strict: false });
    addFormats(ajv);
    const schemaFor = (path: string, method: string, status: number, type: string) => {
      const schema = doc.paths[path][method].responses[String(status)].content[type].schema;
      return ajv.compile({ ...JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', '"#/$defs/')), $defs: doc.components.schemas });
    };
    const admin = actors.platformAdmin();
    const created = await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: "documented" } });
    const tenant = JSON.parse(created.body);
    const checks: Array<[string, string, number, string, unknown]> = [
      ["/v1/tenants", "post", 201, "application/json", tenant],
      ["/v1/tenants", "get", 200, "application/json", JSON.parse((await h.call(admin, { method: "GET", url: "/v1/tenants" })).body)],
      ["/v1/tenants/{tenantId}/quota", "get", 200, "application/json", JSON.parse((await h.call(admin, { method: "GET", url: `/v1/tenants/${tenant.id}/quota` })).body)],
      ["/v1/tenants/{tenantId}", "get", 404, "application/problem+json", JSON.parse((await h.call(admin, { method: "GET", url: "/v1/tenants/none" })).body)],
      ["/v1/tenants", "post", 400, "application/problem+json", JSON.parse((await h.call(admin, { method: "POST", url: "/v1/tenants", payload: { name: 1 } })).body)],
    ];
    for (const [path, method, status, type, body] of checks) {
      const validate = schemaFor(path, method, status, type);
      expect(validate(body), `${method} ${path} ${status}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });
});
