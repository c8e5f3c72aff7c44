import swagger from "@fastify/swagger";
import type { FastifyInstance, RouteOptions } from "fastify";
import { createJsonSchemaTransform, createJsonSchemaTransformObject } from "fastify-type-provider-zod";
import { z } from "zod";
import type { Access } from "./http/access.ts";
import { CORRELATION_HEADER } from "./http/correlation.ts";
import { POSITION_HEADER } from "./http/read-your-writes.ts";
import { PROBLEM_CONTENT_TYPE, ProblemSchema, problemKind } from "./problem.ts";
import { apiSchemas } from "./rest/schemas.ts";

/**
 * The OpenAPI 3.1 document, served at GET /v1/openapi.json, generated from
 * the routes' own zod schemas (fastify-type-provider-zod's transform) by
 * @fastify/swagger. Added here, from what each route declares:
 * - the problem responses it can answer (from its access level, method and
 *   schemas), all `application/problem+json` with the `Problem` schema;
 * - response headers (ETag, X-Dv-Position, Location, X-Correlation-Id);
 * - bearer security on everything but public routes.
 * Internal routes (/healthz, /readyz, /metrics, this document) are hidden.
 * Routes of other plugins with plain JSON schemas are passed through as they are.
 */
export const OPENAPI_PATH = "/v1/openapi.json";

export interface OpenApiInfo {
  readonly title?: string;
  readonly version?: string;
}

/** The document collector: register before any route it should describe. */
export async function registerOpenApi(app: FastifyInstance, info: OpenApiInfo = {}): Promise<void> {
  const zodTransform = createJsonSchemaTransform({ schemaRegistry: apiSchemas });
  /** "METHOD /path/{param}" of operations whose body may be left out (@fastify/swagger marks every body required). */
  const optionalBodies = new Set<string>();
  const zodTransformObject = createJsonSchemaTransformObject({ schemaRegistry: apiSchemas });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: info.title ?? "Dataverket control plane API",
        version: info.version ?? "1",
        description:
          "Sentral tenancy over REST. Errors are RFC 9457 problems (application/problem+json) with a stable `type` " +
          "https://dataverket.dev/problems/<code>. Writes answer after the read model shows them (X-Dv-Position); " +
          "ETag/If-Match carry the tenant stream version; POST accepts Idempotency-Key.",
      },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
      },
      security: [{ bearer: [] }],
      tags: [
        { name: "tenants", description: "Tenants: create, rename, suspend, resume" },
        { name: "projects", description: "Projects of a tenant" },
        { name: "environments", description: "Environments of a project" },
        { name: "quotas", description: "Quotas of tenants and projects" },
      ],
    },
    transform: (input) => {
      const schema = input.schema as Record<string, unknown> | undefined;
      if (!schema || schema.hide) return zodTransform(input);
      // Another plugin's route with plain JSON schemas (mercurius): already what the document wants.
      if (!usesZod(schema)) return { schema: schema as never, url: input.url };
      const out = zodTransform(input);
      document(out.schema as Record<string, any>, input.route as RouteOptions);
      if (schema.body instanceof z.ZodType && schema.body.safeParse(undefined).success) {
        for (const method of [input.route.method].flat()) optionalBodies.add(`${String(method).toLowerCase()} ${openapiPath(input.url)}`);
      }
      return out;
    },
    transformObject: (input) => {
      const object = zodTransformObject(input) as Record<string, any>;
      for (const operation of optionalBodies) {
        const [method, path] = operation.split(" ") as [string, string];
        const body = object.paths?.[path]?.[method]?.requestBody;
        if (body) body.required = false;
      }
      return finish(object) as ReturnType<typeof zodTransformObject>;
    },
  });
}

/** GET /v1/openapi.json (public, hidden from the document itself). */
export function registerOpenApiRoute(app: FastifyInstance): void {
  app.get(OPENAPI_PATH, { schema: { hide: true } as Record<string, unknown>, config: { access: { level: "public" } } }, async () => app.swagger());
}

/** `/v1/tenants/:tenantId` -> `/v1/tenants/{tenantId}` */
function openapiPath(url: string): string {
  return url.replace(/:(\w+)/g, "{$1}");
}

function usesZod(schema: Record<string, unknown>): boolean {
  return ["body", "querystring", "params", "headers"].some((key) => schema[key] instanceof z.ZodType) ||
    Object.values((schema.response ?? {}) as Record<string, unknown>).some((value) => value instanceof z.ZodType);
}

const header = (description: string) => ({ type: "string", description });

/** Adds problem responses, response headers and security to one operation. */
function document(schema: Record<string, any>, route: RouteOptions): void {
  const access = route.config?.access as Access | undefined;
  const method = String(route.method).toUpperCase();
  const write = method !== "GET" && method !== "HEAD";
  const headers = (schema.headers ?? {}) as { properties?: Record<string, unknown> };
  const statuses = new Set<number>([429, 500]);
  if (schema.body || schema.params || schema.querystring) statuses.add(400);
  if (schema.body) statuses.add(415);
  if (access && access.level !== "public") statuses.add(401);
  if (access && "scope" in access && access.scope) statuses.add(404);
  if (access && ["write", "administer-tenant", "administer-platform"].includes(access.level)) statuses.add(403);
  if (write) {
    statuses.add(404); // the domain's *_not_found
    statuses.add(409);
    statuses.add(422);
  }
  if (headers.properties?.["if-match"]) statuses.add(412);
  if ((schema.querystring as { properties?: Record<string, unknown> } | undefined)?.properties?.minPosition) statuses.add(504);

  schema.response ??= {};
  for (const status of [...statuses].sort()) {
    schema.response[String(status)] = {
      description: problemDescription(status),
      content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: "#/components/schemas/Problem" } } },
      ...(status === 429 ? { headers: { "retry-after": header("Seconds until the window resets") } } : {}),
    };
  }
  for (const [status, response] of Object.entries(schema.response as Record<string, any>)) {
    if (!status.startsWith("2") || !response || typeof response !== "object" || "content" in response) continue;
    const out: Record<string, unknown> = { [CORRELATION_HEADER]: header("The request's correlation id (the client's X-Correlation-Id, or generated)") };
    const list = typeof schema.operationId === "string" && schema.operationId.startsWith("list");
    if (status !== "202" && !list) {
      out.etag = header('W/"<tenant stream version>": send it as If-Match to pin a change to this version');
    }
    if (write) out[POSITION_HEADER] = header("Log position of the write; pass as ?minPosition= to read it anywhere");
    response.description ??= SUCCESS[status] ?? "OK";
    if (status === "201" || status === "202") out.location = header("Where the resource is (or will be) readable");
    response.headers = out;
  }
  if (access?.level === "public") schema.security = [];
}

const SUCCESS: Record<string, string> = {
  "200": "The resource as the read model shows it (after the write, for writes)",
  "201": "Created; the resource as the read model shows it",
  "202": "The write is durable but the read model had not applied it in time: read `location` with ?minPosition=`position`",
};

function problemDescription(status: number): string {
  const examples: Record<number, string> = {
    400: "The request is not valid (validation_failed, malformed_body, invalid_cursor, ...): `errors` lists every failing field",
    401: "No valid bearer token (unauthenticated)",
    403: "Visible, but the caller's roles do not allow this (forbidden)",
    404: "No such resource, or not visible to the caller (tenant_not_found, project_not_found, environment_not_found)",
    409: "Conflicts with the current state (exists, name taken, suspended, archived, concurrency_conflict, idempotency_key_in_use)",
    412: "If-Match named another version of the tenant (precondition_failed)",
    415: "The body is not application/json",
    422: "A business rule refuses the values (quota rules, invalid_name, idempotency_key_reused)",
    429: "Rate limited (rate_limited); see Retry-After",
    500: "Internal error; quote the correlation id",
    504: "The read model did not reach ?minPosition in time (projection_lagging)",
  };
  return examples[status] ?? problemKind("").title;
}

/** Adds the Problem schema and drops component schemas nothing references (zod emits an input twin of each). */
function finish(object: Record<string, any>): Record<string, any> {
  // zod marks each component with `$schema` and an `$id` of "#/components/schemas/X", which JSON Schema
  // 2020-12 forbids (no fragments in $id); the document's dialect already says what they would.
  const schemas: Record<string, unknown> = {};
  for (const [name, value] of Object.entries((object.components?.schemas ?? {}) as Record<string, Record<string, unknown>>)) {
    const { $schema: _dialect, $id: _id, ...rest } = value;
    schemas[name] = rest;
  }
  const problem = z.toJSONSchema(ProblemSchema, { target: "draft-2020-12", io: "output", unrepresentable: "any" }) as Record<string, unknown>;
  delete problem.$schema;
  schemas.Problem = problem;

  const referenced = new Set<string>();
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === "object") {
      for (const [key, inner] of Object.entries(value)) {
        if (key === "$ref" && typeof inner === "string" && inner.startsWith("#/components/schemas/")) {
          const name = inner.slice("#/components/schemas/".length);
          if (!referenced.has(name)) {
            referenced.add(name);
            walk(schemas[name]);
          }
        } else walk(inner);
      }
    }
  };
  walk(object.paths);
  for (const name of Object.keys(schemas)) if (!referenced.has(name)) delete schemas[name];
  return { ...object, components: { ...object.components, schemas } };
}
