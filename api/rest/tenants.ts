import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { ConcurrencyError } from "../../adapters/eventstore/errors.ts";
import { loadStream } from "../../commands/pipeline.ts";
import { tenantHandler } from "../../commands/sentral/tenancy.ts";
import { fold } from "../../domain/shared/decider.ts";
import { DomainError } from "../../domain/shared/errors.ts";
import { tenantStreamId } from "../../domain/sentral/stream.ts";
import type { TenancyEvent } from "../../domain/sentral/events.ts";
import { visibleTenants } from "../auth/policy.ts";
import { actorOf, tenantScope } from "../http/access.ts";
import { expectedVersionFrom, sendIfNotModified } from "../http/etag.ts";
import { newResourceId } from "../http/idempotency.ts";
import { decodeCursor, PageQuerySchema, toPage } from "../http/pagination.ts";
import { MinPositionQuerySchema } from "../http/read-your-writes.ts";
import { ApiProblem } from "../problem.ts";
import { answerWrite, runCommand, type RestDeps } from "./command.ts";
import { ifMatchHeader, idempotencyHeader } from "./headers.ts";
import {
  AcceptedSchema,
  CreateTenantBody,
  EmptyBody,
  SuspendTenantBody,
  TenantListFilter,
  TenantPage,
  TenantParams,
  TenantSchema,
  UpdateTenantBody,
  renderTenant,
} from "./schemas.ts";

const TAGS = ["tenants"];
const location = (tenantId: string) => `/v1/tenants/${encodeURIComponent(tenantId)}`;

/**
 * Tenants. Suspend and resume are actions: POST /v1/tenants/{id}/suspend and
 * /resume (the domain has no tenant deletion, so there is no DELETE).
 */
export const tenantRoutes: FastifyPluginAsyncZod<RestDeps> = async (app, deps) => {
  const loadTenant = (tenantId: string) => deps.read.getTenant(tenantId);

  app.post(
    "/v1/tenants",
    {
      schema: {
        operationId: "createTenant",
        summary: "Create a tenant (platform-admin)",
        tags: TAGS,
        headers: idempotencyHeader,
        body: CreateTenantBody,
        response: { 200: TenantSchema, 201: TenantSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "administer-platform" } },
    },
    async (request, reply) => {
      const tenantId = newResourceId(request, request.body.id);
      const command = { type: "CreateTenant" as const, tenantId, name: request.body.name, displayName: request.body.displayName };
      const written = await runCommand(deps, request, reply, command, { tenantId });
      return answerWrite(reply, written, {
        location: location(tenantId),
        created: written.result.events.length > 0,
        load: () => loadTenant(tenantId),
        render: renderTenant,
      });
    },
  );

  app.get(
    "/v1/tenants",
    {
      schema: {
        operationId: "listTenants",
        summary: "List the tenants the caller can see",
        tags: TAGS,
        querystring: PageQuerySchema.extend(TenantListFilter.shape).extend(MinPositionQuerySchema.shape),
        response: { 200: TenantPage },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const { limit, cursor, name, status, minPosition } = request.query;
      await deps.ryw.beforeRead(minPosition);
      const list = "tenants";
      const rows = await deps.read.listTenants(visibleTenants(actorOf(request)), {
        after: decodeCursor(list, cursor),
        limit: limit + 1,
        ...(name !== undefined ? { name } : {}),
        ...(status !== undefined ? { status } : {}),
      });
      return toPage(list, rows, limit, (row) => row.tenant_id, renderTenant);
    },
  );

  app.get(
    "/v1/tenants/:tenantId",
    {
      schema: {
        operationId: "getTenant",
        summary: "Get a tenant",
        tags: TAGS,
        params: TenantParams,
        querystring: MinPositionQuerySchema,
        response: { 200: TenantSchema },
      },
      config: { access: { level: "read", scope: tenantScope } },
    },
    async (request, reply) => {
      await deps.ryw.beforeRead(request.query.minPosition);
      const row = await loadTenant(request.params.tenantId);
      if (!row) throw tenantNotFound(request.params.tenantId);
      if (sendIfNotModified(request, reply, row.stream_version)) return reply;
      return renderTenant(row);
    },
  );

  app.patch(
    "/v1/tenants/:tenantId",
    {
      schema: {
        operationId: "updateTenant",
        summary: "Rename a tenant or change its display name (tenant-admin)",
        description: "Only the fields sent change. If-Match pins the tenant's version.",
        tags: TAGS,
        params: TenantParams,
        headers: ifMatchHeader,
        body: UpdateTenantBody,
        response: { 200: TenantSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "administer-tenant", scope: tenantScope } },
    },
    async (request, reply) => {
      const { tenantId } = request.params;
      const { name, displayName } = request.body;
      const written =
        name !== undefined
          ? await runCommand(deps, request, reply, { type: "RenameTenant", tenantId, name, displayName }, { tenantId })
          : await renameKeepingName(deps, request, reply, tenantId, displayName ?? null);
      return answerWrite(reply, written, { location: location(tenantId), load: () => loadTenant(tenantId), render: renderTenant });
    },
  );

  app.post(
    "/v1/tenants/:tenantId/suspend",
    {
      schema: {
        operationId: "suspendTenant",
        summary: "Suspend a tenant (platform-admin)",
        description: "A suspended tenant refuses every change but rename and resume. Suspending a suspended tenant changes nothing.",
        tags: TAGS,
        params: TenantParams,
        headers: ifMatchHeader.extend(idempotencyHeader.shape),
        body: SuspendTenantBody,
        response: { 200: TenantSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "administer-platform", scope: tenantScope } },
    },
    async (request, reply) => {
      const { tenantId } = request.params;
      const written = await runCommand(deps, request, reply, { type: "SuspendTenant", tenantId, reason: request.body.reason }, { tenantId });
      return answerWrite(reply, written, { location: location(tenantId), load: () => loadTenant(tenantId), render: renderTenant });
    },
  );

  app.post(
    "/v1/tenants/:tenantId/resume",
    {
      schema: {
        operationId: "resumeTenant",
        summary: "Resume a suspended tenant (platform-admin)",
        tags: TAGS,
        params: TenantParams,
        headers: ifMatchHeader.extend(idempotencyHeader.shape),
        body: EmptyBody,
        response: { 200: TenantSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "administer-platform", scope: tenantScope } },
    },
    async (request, reply) => {
      const { tenantId } = request.params;
      const written = await runCommand(deps, request, reply, { type: "ResumeTenant", tenantId }, { tenantId });
      return answerWrite(reply, written, { location: location(tenantId), load: () => loadTenant(tenantId), render: renderTenant });
    },
  );
};

export function tenantNotFound(tenantId: string): ApiProblem {
  return new ApiProblem("tenant_not_found", `tenant ${tenantId} does not exist`, { details: { tenantId } });
}

/**
 * A PATCH of the display name alone: RenameTenant needs the name, so take the
 * current one from the tenant's stream (the source of truth, not the read
 * model, which may lag) and pin the command to the version it was read at, so
 * a concurrent rename is never undone. Retried when it loses such a race,
 * unless the client pinned a version itself.
 */
async function renameKeepingName(deps: RestDeps, request: FastifyRequest, reply: Parameters<typeof runCommand>[2], tenantId: string, displayName: string | null) {
  const clientPin = expectedVersionFrom(request);
  for (let attempt = 1; ; attempt++) {
    const loaded = await loadStream<TenancyEvent>(deps.store, tenantStreamId(tenantId), tenantHandler.eventSchemas);
    const state = fold(tenantHandler.decider, loaded.events);
    if (state.status === "absent") {
      if (clientPin !== undefined) throw new ConcurrencyError(tenantStreamId(tenantId), clientPin, "no_stream");
      throw new DomainError("tenant_not_found", `tenant ${tenantId} does not exist`, { tenantId });
    }
    try {
      return await runCommand(
        deps,
        request,
        reply,
        { type: "RenameTenant", tenantId, name: state.name, displayName },
        { tenantId },
        { expectedVersion: clientPin ?? loaded.version },
      );
    } catch (error) {
      if (!(error instanceof ConcurrencyError) || clientPin !== undefined || attempt >= 3) throw error;
    }
  }
}
