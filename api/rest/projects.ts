import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { visibleProjects } from "../auth/policy.ts";
import { actorOf, projectScope, tenantScope } from "../http/access.ts";
import { sendIfNotModified } from "../http/etag.ts";
import { newResourceId } from "../http/idempotency.ts";
import { decodeCursor, PageQuerySchema, toPage } from "../http/pagination.ts";
import { MinPositionQuerySchema } from "../http/read-your-writes.ts";
import { ApiProblem } from "../problem.ts";
import { projectBootstrapTaskId } from "../../commands/sentral/bootstrap.ts";
import { answerWrite, runCommand, type RestDeps } from "./command.ts";
import { ifMatchHeader, idempotencyHeader } from "./headers.ts";
import {
  AcceptedSchema,
  CreateProjectBody,
  EmptyBody,
  LifecycleListFilter,
  ProjectPage,
  ProjectParams,
  ProjectSchema,
  TenantParams,
  renderProject,
} from "./schemas.ts";
import { tenantNotFound } from "./tenants.ts";

const TAGS = ["projects"];
/** Names the task a write started, for clients to follow (GET /v1/tasks/{id}). */
const TASK_HEADER = "x-dv-task";
const location = (tenantId: string, projectId: string) =>
  `/v1/tenants/${encodeURIComponent(tenantId)}/projects/${encodeURIComponent(projectId)}`;

/**
 * Projects of a tenant. Archiving is an action, POST .../archive: an archived
 * project stays readable (status "archived") and its name may be reused; it
 * needs every environment archived first (409 project_has_active_environments).
 * Projects cannot be renamed (the domain has no such command).
 */
export const projectRoutes: FastifyPluginAsyncZod<RestDeps> = async (app, deps) => {
  const load = (tenantId: string, projectId: string) => deps.read.getProject(tenantId, projectId);

  app.post(
    "/v1/tenants/:tenantId/projects",
    {
      schema: {
        operationId: "createProject",
        summary: "Create a project in a tenant (tenant-admin)",
        tags: TAGS,
        params: TenantParams,
        headers: ifMatchHeader.extend(idempotencyHeader.shape),
        body: CreateProjectBody,
        response: { 200: ProjectSchema, 201: ProjectSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "administer-tenant", scope: tenantScope } },
    },
    async (request, reply) => {
      const { tenantId } = request.params;
      const projectId = newResourceId(request, request.body.id);
      const { name, description, withDefaultEnvironments } = request.body;
      const bootstrapTaskId = withDefaultEnvironments ? projectBootstrapTaskId(tenantId, projectId) : undefined;
      const command = { type: "CreateProject" as const, tenantId, projectId, name, description, ...(bootstrapTaskId ? { bootstrapTaskId } : {}) };
      const written = await runCommand(deps, request, reply, command, { tenantId, projectId });
      if (bootstrapTaskId) reply.header(TASK_HEADER, bootstrapTaskId);
      return answerWrite(reply, written, {
        location: location(tenantId, projectId),
        created: written.result.events.length > 0,
        load: () => load(tenantId, projectId),
        render: renderProject,
      });
    },
  );

  app.get(
    "/v1/tenants/:tenantId/projects",
    {
      schema: {
        operationId: "listProjects",
        summary: "List the projects of a tenant the caller can see",
        tags: TAGS,
        params: TenantParams,
        querystring: PageQuerySchema.extend(LifecycleListFilter.shape).extend(MinPositionQuerySchema.shape),
        response: { 200: ProjectPage },
      },
      config: { access: { level: "read", scope: tenantScope } },
    },
    async (request) => {
      const { tenantId } = request.params;
      const { limit, cursor, name, status, minPosition } = request.query;
      await deps.ryw.beforeRead(minPosition);
      const list = `projects/${tenantId}`;
      const after = decodeCursor(list, cursor);
      if (!(await deps.read.getTenant(tenantId))) throw tenantNotFound(tenantId);
      const rows = await deps.read.listProjects(tenantId, visibleProjects(actorOf(request), tenantId), {
        after,
        limit: limit + 1,
        ...(name !== undefined ? { name } : {}),
        ...(status !== undefined ? { status } : {}),
      });
      return toPage(list, rows, limit, (row) => row.project_id, renderProject);
    },
  );

  app.get(
    "/v1/tenants/:tenantId/projects/:projectId",
    {
      schema: {
        operationId: "getProject",
        summary: "Get a project",
        tags: TAGS,
        params: ProjectParams,
        querystring: MinPositionQuerySchema,
        response: { 200: ProjectSchema },
      },
      config: { access: { level: "read", scope: projectScope } },
    },
    async (request, reply) => {
      const { tenantId, projectId } = request.params;
      await deps.ryw.beforeRead(request.query.minPosition);
      const row = await load(tenantId, projectId);
      if (!row) throw projectNotFound(tenantId, projectId);
      if (sendIfNotModified(request, reply, row.stream_version)) return reply;
      return renderProject(row);
    },
  );

  app.post(
    "/v1/tenants/:tenantId/projects/:projectId/archive",
    {
      schema: {
        operationId: "archiveProject",
        summary: "Archive a project (tenant-admin)",
        description: "Every environment must be archived first. Archiving an archived project changes nothing.",
        tags: TAGS,
        params: ProjectParams,
        headers: ifMatchHeader.extend(idempotencyHeader.shape),
        body: EmptyBody,
        response: { 200: ProjectSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "administer-tenant", scope: projectScope } },
    },
    async (request, reply) => {
      const { tenantId, projectId } = request.params;
      const written = await runCommand(deps, request, reply, { type: "ArchiveProject", tenantId, projectId }, { tenantId, projectId });
      return answerWrite(reply, written, { location: location(tenantId, projectId), load: () => load(tenantId, projectId), render: renderProject });
    },
  );
};

export function projectNotFound(tenantId: string, projectId: string): ApiProblem {
  return new ApiProblem("project_not_found", `project ${projectId} does not exist`, { details: { tenantId, projectId } });
}
