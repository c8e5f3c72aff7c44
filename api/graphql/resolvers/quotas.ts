import { runMutation } from "../commands.ts";
import type { GraphqlContext } from "../context.ts";
import { projectView, quotaView, tenantView, type ProjectView, type TenantView } from "../views.ts";
import type { ResolverMap } from "./types.ts";

/** Limits as GraphQL coerced them: only the fields sent are present, null where the caller sent null. */
type QuotaLimitsInput = Readonly<Record<string, number | null>>;

interface SetTenantQuotaInput {
  readonly tenantId: string;
  readonly limits: QuotaLimitsInput;
  readonly expectedVersion?: number | null;
}

interface SetProjectQuotaInput {
  readonly tenantId: string;
  readonly projectId: string;
  readonly limits: QuotaLimitsInput;
  readonly expectedVersion?: number | null;
}

/** Quotas are fields of Tenant and Project (one batched query per page), and two mutations. */
export const quotaResolvers: ResolverMap = {
  Tenant: {
    quota: async (tenant: TenantView, _args: unknown, context: GraphqlContext) => quotaView(await context.loaders.tenantQuota.load(tenant.tenantId)),
  },
  Project: {
    // usageOf: Quota.usage (resolvers/vms.ts) shows what the project's VMs use.
    quota: async (project: ProjectView, _args: unknown, context: GraphqlContext) => ({
      ...quotaView(await context.loaders.projectQuota.load([project.tenantId, project.projectId])),
      usageOf: [project.tenantId, project.projectId] as const,
    }),
  },

  Mutation: {
    setTenantQuota: (_root: unknown, { input }: { input: SetTenantQuotaInput }, context: GraphqlContext) =>
      runMutation(context, {
        access: { level: "administer-platform", scope: { tenantId: input.tenantId } },
        command: { type: "SetTenantQuota", tenantId: input.tenantId, limits: { ...input.limits } },
        expectedVersion: input.expectedVersion,
        answer: async (written) => {
          const [row, quota] = await Promise.all([context.loaders.tenant.load(input.tenantId), context.loaders.tenantQuota.load(input.tenantId)]);
          return row ? { __typename: "TenantQuotaPayload" as const, tenant: tenantView(row), quota: quotaView(quota), ...written } : undefined;
        },
      }),

    setProjectQuota: (_root: unknown, { input }: { input: SetProjectQuotaInput }, context: GraphqlContext) =>
      runMutation(context, {
        access: { level: "administer-tenant", scope: { tenantId: input.tenantId, projectId: input.projectId } },
        command: { type: "SetProjectQuota", tenantId: input.tenantId, projectId: input.projectId, limits: { ...input.limits } },
        expectedVersion: input.expectedVersion,
        answer: async (written) => {
          const key = [input.tenantId, input.projectId] as const;
          const [row, quota] = await Promise.all([context.loaders.project.load(key), context.loaders.projectQuota.load(key)]);
          return row ? { __typename: "ProjectQuotaPayload" as const, project: projectView(row), quota: { ...quotaView(quota), usageOf: key }, ...written } : undefined;
        },
      }),
  },
};
