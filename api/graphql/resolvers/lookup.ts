import { canSee, visibleProjects } from "../../auth/policy.ts";
import { lists, pageRequest, toConnection, type Connection, type PageArgs } from "../connections.ts";
import { actorOf, type GraphqlContext } from "../context.ts";
import type { EnvironmentRow, LifecycleStatus, ProjectRow, TenantRow } from "../../../projections/sentral/tenancy.ts";
import { environmentView, projectView, statusFilter, type EnvironmentView, type ProjectView } from "../views.ts";

/**
 * The visibility-checked ways into the read model that every resolver uses:
 * what the actor may not see is read as null, exactly like what does not
 * exist (canSee decides before any row is read).
 */
export async function visibleTenant(context: GraphqlContext, tenantId: string): Promise<TenantRow | null> {
  if (!canSee(actorOf(context), { tenantId })) return null;
  return context.loaders.tenant.load(tenantId);
}

export async function visibleProject(context: GraphqlContext, tenantId: string, projectId: string): Promise<ProjectRow | null> {
  if (!canSee(actorOf(context), { tenantId, projectId })) return null;
  return context.loaders.project.load([tenantId, projectId]);
}

export async function visibleEnvironment(
  context: GraphqlContext,
  tenantId: string,
  projectId: string,
  environmentId: string,
): Promise<EnvironmentRow | null> {
  if (!canSee(actorOf(context), { tenantId, projectId })) return null;
  return context.loaders.environment.load([tenantId, projectId, environmentId]);
}

export interface LifecyclePageArgs extends PageArgs {
  readonly status?: string | null;
}

/** A visible tenant's projects, filtered to those the actor may see (a project member: its own). */
export async function projectConnection(context: GraphqlContext, tenantId: string, args: LifecyclePageArgs): Promise<Connection<ProjectView>> {
  const list = lists.projects(tenantId);
  const page = pageRequest(list, args);
  const rows = await context.loaders.projectPage.load({
    tenantId,
    limit: page.first + 1,
    after: page.after,
    status: statusFilter<LifecycleStatus>(args.status),
    visible: visibleProjects(actorOf(context), tenantId),
  });
  return toConnection(list, rows, page.first, (row) => row.project_id, projectView);
}

/** A visible project's environments (whoever sees a project sees all its environments). */
export async function environmentConnection(
  context: GraphqlContext,
  tenantId: string,
  projectId: string,
  args: LifecyclePageArgs,
): Promise<Connection<EnvironmentView>> {
  const list = lists.environments(tenantId, projectId);
  const page = pageRequest(list, args);
  const rows = await context.loaders.environmentPage.load({
    tenantId,
    projectId,
    limit: page.first + 1,
    after: page.after,
    status: statusFilter<LifecycleStatus>(args.status),
  });
  return toConnection(list, rows, page.first, (row) => row.environment_id, environmentView);
}
