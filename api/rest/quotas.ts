import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { QUOTA_RESOURCES, type QuotaLimitsPatch } from "../../domain/sentral/limits.ts";
import { projectScope, tenantScope } from "../http/access.ts";
import { etagFor, sendIfNotModified } from "../http/etag.ts";
import { MinPositionQuerySchema } from "../http/read-your-writes.ts";
import type { QuotaView } from "../read/tenancy.ts";
import type { VmInfraReadModel } from "../read/vm-infra.ts";
import { answerWrite, runCommand, type RestDeps } from "./command.ts";
import { ifMatchHeader } from "./headers.ts";
import { projectNotFound } from "./projects.ts";
import { AcceptedSchema, ProjectParams, PutQuotaBody, QuotaSchema, TenantParams, renderQuota } from "./schemas.ts";
import { tenantNotFound } from "./tenants.ts";

const TAGS = ["quotas"];

export interface QuotaRouteDeps extends RestDeps {
  /** Project usage: the project's VMs not deleted (maskin_vms read model). */
  readonly vmUsage: Pick<VmInfraReadModel, "projectVmUsage">;
}

export const QuotaUsageSchema = z
  .object({ vms: z.number().int(), vcpus: z.number().int(), memoryMiB: z.number().int() })
  .describe("What the project's VMs that are not deleted take (from the VM read model, so shortly behind a create or delete)");
const ProjectQuotaSchema = QuotaSchema.extend({ usage: QuotaUsageSchema });

/**
 * Quotas of a tenant and of a project: GET and PUT. PUT replaces the whole
 * quota: every resource absent or null in `limits` has no limit afterwards.
 * (The command underneath takes a patch; the API sends all six resources.)
 *
 * Who may set them: a tenant's quota is the platform's cap on the tenant, so
 * only a platform-admin sets it (a tenant-admin raising its own cap would
 * make it no cap); a project's quota is how a tenant-admin shares the
 * tenant's capacity, so canAdministerTenant.
 */
export const quotaRoutes: FastifyPluginAsyncZod<QuotaRouteDeps> = async (app, deps) => {
  const withUsage = async (quota: QuotaView) => ({ ...renderQuota(quota), usage: await deps.vmUsage.projectVmUsage(quota.tenantId, quota.projectId ?? "") });
  const withVersion = (quota: QuotaView | undefined) => (quota ? { ...quota, stream_version: quota.streamVersion } : undefined);

  app.get(
    "/v1/tenants/:tenantId/quota",
    {
      schema: {
        operationId: "getTenantQuota",
        summary: "Get a tenant's quota",
        tags: TAGS,
        params: TenantParams,
        querystring: MinPositionQuerySchema,
        response: { 200: QuotaSchema },
      },
      config: { access: { level: "read", scope: tenantScope } },
    },
    async (request, reply) => {
      const { tenantId } = request.params;
      await deps.ryw.beforeRead(request.query.minPosition);
      const quota = await deps.read.getTenantQuota(tenantId);
      if (!quota) throw tenantNotFound(tenantId);
      if (sendIfNotModified(request, reply, quota.streamVersion)) return reply;
      return renderQuota(quota);
    },
  );

  app.put(
    "/v1/tenants/:tenantId/quota",
    {
      schema: {
        operationId: "putTenantQuota",
        summary: "Replace a tenant's quota (platform-admin)",
        description: "A limit below an active project's limit for the same resource is refused (422 quota_below_project_limit).",
        tags: TAGS,
        params: TenantParams,
        headers: ifMatchHeader,
        body: PutQuotaBody,
        response: { 200: QuotaSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "administer-platform", scope: tenantScope } },
    },
    async (request, reply) => {
      const { tenantId } = request.params;
      const limits = fullPatch(request.body.limits);
      const written = await runCommand(deps, request, reply, { type: "SetTenantQuota", tenantId, limits }, { tenantId });
      return answerWrite(reply, written, {
        location: `/v1/tenants/${encodeURIComponent(tenantId)}/quota`,
        load: async () => withVersion(await deps.read.getTenantQuota(tenantId)),
        render: renderQuota,
      });
    },
  );

  app.get(
    "/v1/tenants/:tenantId/projects/:projectId/quota",
    {
      schema: {
        operationId: "getProjectQuota",
        summary: "Get a project's quota with its usage (vms, vcpus, memoryMiB of its VMs not deleted)",
        description: "The ETag is the limits' version (send it as If-Match on PUT); If-None-Match is not honoured here, as usage changes without it.",
        tags: TAGS,
        params: ProjectParams,
        querystring: MinPositionQuerySchema,
        response: { 200: ProjectQuotaSchema },
      },
      config: { access: { level: "read", scope: projectScope } },
    },
    async (request, reply) => {
      const { tenantId, projectId } = request.params;
      await deps.ryw.beforeRead(request.query.minPosition);
      const quota = await deps.read.getProjectQuota(tenantId, projectId);
      if (!quota) throw projectNotFound(tenantId, projectId);
      // The ETag names the limits' version (for If-Match on PUT); no 304: usage moves without it.
      reply.header("etag", etagFor(quota.streamVersion));
      return withUsage(quota);
    },
  );

  app.put(
    "/v1/tenants/:tenantId/projects/:projectId/quota",
    {
      schema: {
        operationId: "putProjectQuota",
        summary: "Replace a project's quota (tenant-admin)",
        description: "A limit above the tenant's limit for the same resource is refused (422 quota_exceeds_tenant_limit).",
        tags: TAGS,
        params: ProjectParams,
        headers: ifMatchHeader,
        body: PutQuotaBody,
        response: { 200: ProjectQuotaSchema, 202: AcceptedSchema },
      },
      config: { access: { level: "administer-tenant", scope: projectScope } },
    },
    async (request, reply) => {
      const { tenantId, projectId } = request.params;
      const limits = fullPatch(request.body.limits);
      const written = await runCommand(deps, request, reply, { type: "SetProjectQuota", tenantId, projectId, limits }, { tenantId, projectId });
      return answerWrite(reply, written, {
        location: `/v1/tenants/${encodeURIComponent(tenantId)}/projects/${encodeURIComponent(projectId)}/quota`,
        load: async () => {
          const quota = withVersion(await deps.read.getProjectQuota(tenantId, projectId));
          return quota ? { ...quota, usage: await deps.vmUsage.projectVmUsage(tenantId, projectId) } : undefined;
        },
        render: (quota) => ({ ...renderQuota(quota), usage: quota.usage }),
      });
    },
  );
};

/** PUT semantics on a patch command: name every resource, null where the body has no limit. */
function fullPatch(limits: QuotaLimitsPatch): QuotaLimitsPatch {
  const patch: Record<string, number | null> = {};
  for (const resource of QUOTA_RESOURCES) patch[resource] = limits[resource] ?? null;
  return patch as QuotaLimitsPatch;
}
