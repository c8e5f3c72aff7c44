import { v7 as uuidv7 } from "uuid";
import type { TenantStatus } from "../../../projections/sentral/tenancy.ts";
import { visibleTenants } from "../../auth/policy.ts";
import { clientIdIssues, runMutation } from "../commands.ts";
import { lists, pageRequest, toConnection } from "../connections.ts";
import { actorOf, type GraphqlContext } from "../context.ts";
import { statusFilter, tenantView, type TenantView } from "../views.ts";
import { projectConnection, visibleTenant, type LifecyclePageArgs } from "./lookup.ts";
import type { ResolverMap } from "./types.ts";

interface TenantPageArgs {
  readonly first?: number | null;
  readonly after?: string | null;
  readonly status?: string | null;
}

interface CreateTenantInput {
  readonly tenantId?: string | null;
  readonly name: string;
  readonly displayName?: string | null;
}

interface RenameTenantInput {
  readonly tenantId: string;
  readonly name: string;
  readonly displayName?: string | null;
  readonly expectedVersion?: number | null;
}

interface SuspendTenantInput {
  readonly tenantId: string;
  readonly reason: string;
  readonly expectedVersion?: number | null;
}

interface ResumeTenantInput {
  readonly tenantId: string;
  readonly expectedVersion?: number | null;
}

/** The tenant payload once the read model shows the write. */
async function tenantPayload(context: GraphqlContext, tenantId: string, written: { position: string; changed: boolean }) {
  const row = await context.loaders.tenant.load(tenantId);
  return row ? { __typename: "TenantPayload" as const, tenant: tenantView(row), ...written } : undefined;
}

export const tenantResolvers: ResolverMap = {
  Query: {
    tenant: async (_root: unknown, args: { id: string }, context: GraphqlContext) => {
      const row = await visibleTenant(context, args.id);
      return row ? tenantView(row) : null;
    },
    tenants: async (_root: unknown, args: TenantPageArgs, context: GraphqlContext) => {
      const page = pageRequest(lists.tenants, args);
      const status = statusFilter<TenantStatus>(args.status);
      const rows = await context.services.read.listTenants(visibleTenants(actorOf(context)), {
        limit: page.first + 1,
        ...(page.after !== undefined ? { after: page.after } : {}),
        ...(status !== undefined ? { status } : {}),
      });
      return toConnection(lists.tenants, rows, page.first, (row) => row.tenant_id, tenantView);
    },
  },

  Tenant: {
    projects: (tenant: TenantView, args: LifecyclePageArgs, context: GraphqlContext) => projectConnection(context, tenant.tenantId, args),
  },

  Mutation: {
    createTenant: (_root: unknown, { input }: { input: CreateTenantInput }, context: GraphqlContext) => {
      const tenantId = input.tenantId ?? uuidv7();
      return runMutation(context, {
        access: { level: "administer-platform" },
        inputIssues: clientIdIssues("tenantId", input.tenantId, { tenant: true }),
        command: {
          type: "CreateTenant",
          tenantId,
          name: input.name,
          ...(input.displayName !== null && input.displayName !== undefined ? { displayName: input.displayName } : {}),
        },
        answer: (written) => tenantPayload(context, tenantId, written),
      });
    },

    renameTenant: (_root: unknown, { input }: { input: RenameTenantInput }, context: GraphqlContext) =>
      runMutation(context, {
        access: { level: "administer-tenant", scope: { tenantId: input.tenantId } },
        // displayName: absent keeps it, null clears it (the command's own semantics).
        command: {
          type: "RenameTenant",
          tenantId: input.tenantId,
          name: input.name,
          ...(input.displayName !== undefined ? { displayName: input.displayName } : {}),
        },
        expectedVersion: input.expectedVersion,
        answer: (written) => tenantPayload(context, input.tenantId, written),
      }),

    suspendTenant: (_root: unknown, { input }: { input: SuspendTenantInput }, context: GraphqlContext) =>
      runMutation(context, {
        access: { level: "administer-platform", scope: { tenantId: input.tenantId } },
        command: { type: "SuspendTenant", tenantId: input.tenantId, reason: input.reason },
        expectedVersion: input.expectedVersion,
        answer: (written) => tenantPayload(context, input.tenantId, written),
      }),

    resumeTenant: (_root: unknown, { input }: { input: ResumeTenantInput }, context: GraphqlContext) =>
      runMutation(context, {
        access: { level: "administer-platform", scope: { tenantId: input.tenantId } },
        command: { type: "ResumeTenant", tenantId: input.tenantId },
        expectedVersion: input.expectedVersion,
        answer: (written) => tenantPayload(context, input.tenantId, written),
      }),
  },
};
