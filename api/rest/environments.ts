import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { projectScope } from "../http/access.ts";
import { sendIfNotModified } from "../http/etag.ts";
import { newResourceId } from "../http/idempotency.ts";
import { decodeCursor, PageQuerySchema, toPage } from "../http/pagination.ts";
import { MinPositionQuerySchema } from "../http/read-your-writes.ts";
import { ApiProblem } from "../problem.ts";
import { answerWrite, runCommand, type RestDeps } from "./command.ts";
import { ifMatchHeader, idempotencyHeader } from "./headers.ts";
import { projectNotFound } from "./projects.ts";
import {
  AcceptedSchema,
  CreateEnvironmentBody,
  EmptyBody,
  EnvironmentPage,
  EnvironmentParams,
  EnvironmentSchema,
  LifecycleListFilter,
  ProjectParams,
  renderEnvironment,
} from "./schemas.ts";

const TAGS = ["environments"];
const location = (tenantId: string, projectId: string, environmentId: string) =>
  `/v1/tenants/${encodeURIComponent(tenantId)}/projects/${encodeURIComponent(projectId)}/environments/${encodeURIComponent(environmentId)}`;

/**
 * Environments of a project. Whoever may work in the project (tenant-admin,
 * the project's members) may create and archive them. Archiving is an
 * action, POST .../archive; the environment stays readable as "archived".
 */
export const environmentRoutes: FastifyPluginAsyncZod<RestDeps> = async (app, deps) => {
  const load = (tenantId: string, projectId: string, environmentId: string) =>
    deps.read.getEnvironment(tenantId, projectId, environmentId);

  app.post(
    "/v1/tenants/:tenantId/projects/:projectId/environments",
    {
      schema: {
        operationId: "createEnvironment",
        summary: "Create an environment in a project (project member or tenant-admin)",
        tags: TAGS,
        params: ProjectParams,
        headers: ifMatchHeader.extend(idempotencyHeader.shape),
        body: CreateEnvironmentBody,
        response: { 200: EnvironmentSchema, 201: EnvironmentSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "write", scope: projectScope } },
    },
    async (request, reply) => {
      const { tenantId, projectId } = request.params;
      const environmentId = newResourceId(request, request.body.id);
      const written = await runCommand(
        deps,
        request,
        reply,
        { type: "CreateEnvironment", tenantId, projectId, environmentId, name: request.body.name },
        { tenantId, projectId, environmentId },
      );
      return answerWrite(reply, written, {
        location: location(tenantId, projectId, environmentId),
        created: written.result.events.length > 0,
        load: () => load(tenantId, projectId, environmentId),
        render: renderEnvironment,
      });
    },
  );

  app.get(
    "/v1/tenants/:tenantId/projects/:projectId/environments",
    {
      schema: {
        operationId: "listEnvironments",
        summary: "List the environments of a project",
        tags: TAGS,
        params: ProjectParams,
        querystring: PageQuerySchema.extend(LifecycleListFilter.shape).extend(MinPositionQuerySchema.shape),
        response: { 200: EnvironmentPage },
      },
      config: { access: { level: "read", scope: projectScope } },
    },
    async (request) => {
      const { tenantId, projectId } = request.params;
      const { limit, cursor, name, status, minPosition } = request.query;
      await deps.ryw.beforeRead(minPosition);
      const list = `environments/${tenantId}/${projectId}`;
      const after = decodeCursor(list, cursor);
      if (!(await deps.read.getProject(tenantId, projectId))) throw projectNotFound(tenantId, projectId);
      const rows = await deps.read.listEnvironments(tenantId, projectId, {
        after,
        limit: limit + 1,
        ...(name !== undefined ? { name } : {}),
        ...(status !== undefined ? { status } : {}),
      });
      return toPage(list, rows, limit, (row) => row.environment_id, renderEnvironment);
    },
  );

  app.get(
    "/v1/tenants/:tenantId/projects/:projectId/environments/:environmentId",
    {
      schema: {
        operationId: "getEnvironment",
        summary: "Get an environment",
        tags: TAGS,
        params: EnvironmentParams,
        querystring: MinPositionQuerySchema,
        response: { 200: EnvironmentSchema },
      },
      config: { access: { level: "read", scope: projectScope } },
    },
    async (request, reply) => {
      const { tenantId, projectId, environmentId } = request.params;
      await deps.ryw.beforeRead(request.query.minPosition);
      const row = await load(tenantId, projectId, environmentId);
      if (!row) throw environmentNotFound(tenantId, projectId, environmentId);
      if (sendIfNotModified(request, reply, row.stream_version)) return reply;
      return renderEnvironment(row);
    },
  );

  app.post(
    "/v1/tenants/:tenantId/projects/:projectId/environments/:environmentId/archive",
    {
      schema: {
        operationId: "archiveEnvironment",
        summary: "Archive an environment (project member or tenant-admin)",
        description: "Archiving an archived environment changes nothing.",
        tags: TAGS,
        params: EnvironmentParams,
        headers: ifMatchHeader.extend(idempotencyHeader.shape),
        body: EmptyBody,
        response: { 200: EnvironmentSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "write", scope: projectScope } },
    },
    async (request, reply) => {
      const { tenantId, projectId, environmentId } = request.params;
      const written = await runCommand(
        deps,
        request,
        reply,
        { type: "ArchiveEnvironment", tenantId, projectId, environmentId },
        { tenantId, projectId, environmentId },
      );
      return answerWrite(reply, written, {
        location: location(tenantId, projectId, environmentId),
        load: () => load(tenantId, projectId, environmentId),
        render: renderEnvironment,
      });
    },
  );
};

export function environmentNotFound(tenantId: string, projectId: string, environmentId: string): ApiProblem {
  return new ApiProblem("environment_not_found", `environment ${environmentId} does not exist`, {
    details: { tenantId, projectId, environmentId },
  });
}
