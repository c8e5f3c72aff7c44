import { v7 as uuidv7 } from "uuid";
import { clientIdIssues, runMutation } from "../commands.ts";
import type { GraphqlContext } from "../context.ts";
import { projectView, tenantView, type ProjectView } from "../views.ts";
import { environmentConnection, projectConnection, visibleProject, visibleTenant, type LifecyclePageArgs } from "./lookup.ts";
import type { ResolverMap } from "./types.ts";
import { projectBootstrapTaskId } from "../../../commands/sentral/bootstrap.ts";

interface CreateProjectInput {
  readonly tenantId: string;
  readonly projectId?: string | null;
  readonly name: string;
  readonly description?: string | null;
  readonly withDefaultEnvironments?: boolean | null;
  readonly expectedVersion?: number | null;
}

interface ArchiveProjectInput {
  readonly tenantId: string;
  readonly projectId: string;
  readonly expectedVersion?: number | null;
}

async function projectPayload(
  context: GraphqlContext,
  tenantId: string,
  projectId: string,
  written: { position: string; changed: boolean },
  bootstrapTaskId: string | null = null,
) {
  const row = await context.loaders.project.load([tenantId, projectId]);
  return row ? { __typename: "ProjectPayload" as const, project: projectView(row), bootstrapTaskId, ...written } : undefined;
}

export const projectResolvers: ResolverMap = {
  Query: {
    project: async (_root: unknown, args: { tenantId: string; projectId: string }, context: GraphqlContext) => {
      const row = await visibleProject(context, args.tenantId, args.projectId);
      return row ? projectView(row) : null;
    },
    projects: async (_root: unknown, args: LifecyclePageArgs & { tenantId: string }, context: GraphqlContext) => {
      // A tenant that is not there (or not visible) has no list at all: null, as `tenant` would be.
      if (!(await visibleTenant(context, args.tenantId))) return null;
      return projectConnection(context, args.tenantId, args);
    },
  },

  Project: {
    // Whoever sees a project sees its tenant (canSee of the tenant scope is implied), so this is never null.
    tenant: async (project: ProjectView, _args: unknown, context: GraphqlContext) => {
      const row = await visibleTenant(context, project.tenantId);
      if (!row) throw new Error(`project ${project.projectId} has no visible tenant ${project.tenantId}`);
      return tenantView(row);
    },
    environments: (project: ProjectView, args: LifecyclePageArgs, context: GraphqlContext) =>
      environmentConnection(context, project.tenantId, project.projectId, args),
  },

  Mutation: {
    createProject: (_root: unknown, { input }: { input: CreateProjectInput }, context: GraphqlContext) => {
      const projectId = input.projectId ?? uuidv7();
      const bootstrapTaskId = input.withDefaultEnvironments ? projectBootstrapTaskId(input.tenantId, projectId) : null;
      return runMutation(context, {
        access: { level: "administer-tenant", scope: { tenantId: input.tenantId } },
        inputIssues: clientIdIssues("projectId", input.projectId),
        command: {
          type: "CreateProject",
          tenantId: input.tenantId,
          projectId,
          name: input.name,
          ...(input.description !== null && input.description !== undefined ? { description: input.description } : {}),
          ...(bootstrapTaskId ? { bootstrapTaskId } : {}),
        },
        expectedVersion: input.expectedVersion,
        answer: (written) => projectPayload(context, input.tenantId, projectId, written, bootstrapTaskId),
      });
    },

    archiveProject: (_root: unknown, { input }: { input: ArchiveProjectInput }, context: GraphqlContext) =>
      runMutation(context, {
        access: { level: "administer-tenant", scope: { tenantId: input.tenantId, projectId: input.projectId } },
        command: { type: "ArchiveProject", tenantId: input.tenantId, projectId: input.projectId },
        expectedVersion: input.expectedVersion,
        answer: (written) => projectPayload(context, input.tenantId, input.projectId, written),
      }),
  },
};
