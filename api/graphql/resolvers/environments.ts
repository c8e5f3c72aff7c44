import { v7 as uuidv7 } from "uuid";
import { clientIdIssues, runMutation } from "../commands.ts";
import type { GraphqlContext } from "../context.ts";
import { environmentView, projectView, type EnvironmentView } from "../views.ts";
import { environmentConnection, visibleEnvironment, visibleProject, type LifecyclePageArgs } from "./lookup.ts";
import type { ResolverMap } from "./types.ts";

interface CreateEnvironmentInput {
  readonly tenantId: string;
  readonly projectId: string;
  readonly environmentId?: string | null;
  readonly name: string;
  readonly expectedVersion?: number | null;
}

interface ArchiveEnvironmentInput {
  readonly tenantId: string;
  readonly projectId: string;
  readonly environmentId: string;
  readonly expectedVersion?: number | null;
}

async function environmentPayload(
  context: GraphqlContext,
  key: readonly [string, string, string],
  written: { position: string; changed: boolean },
) {
  const row = await context.loaders.environment.load(key);
  return row ? { __typename: "EnvironmentPayload" as const, environment: environmentView(row), ...written } : undefined;
}

export const environmentResolvers: ResolverMap = {
  Query: {
    environment: async (_root: unknown, args: { tenantId: string; projectId: string; environmentId: string }, context: GraphqlContext) => {
      const row = await visibleEnvironment(context, args.tenantId, args.projectId, args.environmentId);
      return row ? environmentView(row) : null;
    },
    environments: async (_root: unknown, args: LifecyclePageArgs & { tenantId: string; projectId: string }, context: GraphqlContext) => {
      if (!(await visibleProject(context, args.tenantId, args.projectId))) return null;
      return environmentConnection(context, args.tenantId, args.projectId, args);
    },
  },

  Environment: {
    project: async (environment: EnvironmentView, _args: unknown, context: GraphqlContext) => {
      const row = await visibleProject(context, environment.tenantId, environment.projectId);
      if (!row) throw new Error(`environment ${environment.environmentId} has no visible project ${environment.projectId}`);
      return projectView(row);
    },
  },

  Mutation: {
    createEnvironment: (_root: unknown, { input }: { input: CreateEnvironmentInput }, context: GraphqlContext) => {
      const environmentId = input.environmentId ?? uuidv7();
      return runMutation(context, {
        access: { level: "write", scope: { tenantId: input.tenantId, projectId: input.projectId } },
        inputIssues: clientIdIssues("environmentId", input.environmentId),
        command: { type: "CreateEnvironment", tenantId: input.tenantId, projectId: input.projectId, environmentId, name: input.name },
        expectedVersion: input.expectedVersion,
        answer: (written) => environmentPayload(context, [input.tenantId, input.projectId, environmentId], written),
      });
    },

    archiveEnvironment: (_root: unknown, { input }: { input: ArchiveEnvironmentInput }, context: GraphqlContext) =>
      runMutation(context, {
        access: { level: "write", scope: { tenantId: input.tenantId, projectId: input.projectId } },
        command: { type: "ArchiveEnvironment", tenantId: input.tenantId, projectId: input.projectId, environmentId: input.environmentId },
        expectedVersion: input.expectedVersion,
        answer: (written) => environmentPayload(context, [input.tenantId, input.projectId, input.environmentId], written),
      }),
  },
};
