import { Kysely, PostgresDialect } from "kysely";
import type pg from "pg";
import type { TaskStatus } from "../../domain/task/index.ts";
import { liveSchema, tasksProjection } from "../../projections/index.ts";
import type { TaskRow, TaskTables } from "../../projections/sentral/tasks.ts";
import { canSee, visibleProjects, visibleTenants, type ResourceScope } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";

/**
 * The API's only way into the tasks read model (schema `tasks`). A task is
 * visible to whoever can see its scope (`canSee` of its tenant and project);
 * lists filter by that in SQL, so other tenants' rows are never read.
 */

/** "all", or per visible tenant: every task there, or its tenant-wide tasks plus those of these projects. */
export type TaskVisibility = "all" | ReadonlyArray<{ readonly tenantId: string; readonly projects: "all" | readonly string[] }>;

export function taskVisibility(actor: AuthenticatedActor): TaskVisibility {
  const tenants = visibleTenants(actor);
  if (tenants === "all") return "all";
  return tenants.map((tenantId) => ({ tenantId, projects: visibleProjects(actor, tenantId) }));
}

/** The policy scope of a task: its tenant, and its project when it has one. */
export function taskScope(row: Pick<TaskRow, "tenant_id" | "project_id">): ResourceScope {
  return row.project_id === null ? { tenantId: row.tenant_id } : { tenantId: row.tenant_id, projectId: row.project_id };
}

export function canSeeTask(actor: AuthenticatedActor, row: Pick<TaskRow, "tenant_id" | "project_id">): boolean {
  return canSee(actor, taskScope(row));
}

export interface TaskListFilter {
  readonly status?: TaskStatus;
  readonly tenantId?: string;
  readonly projectId?: string;
  readonly environmentId?: string;
  readonly resourceType?: string;
  readonly resourceId?: string;
  /** Exclusive keyset cursor: the last task id of the previous page. */
  readonly after?: string;
  readonly limit: number;
}

export class TaskReadModel {
  private readonly db: Kysely<TaskTables>;

  constructor(pool: pg.Pool) {
    this.db = new Kysely<TaskTables>({ dialect: new PostgresDialect({ pool }) }).withSchema(liveSchema(tasksProjection));
  }

  getTask(taskId: string): Promise<TaskRow | undefined> {
    return this.db.selectFrom("tasks").selectAll().where("task_id", "=", taskId).executeTakeFirst();
  }

  /** Tasks ordered by id, filtered by the caller's visibility in SQL. */
  listTasks(visible: TaskVisibility, filter: TaskListFilter): Promise<TaskRow[]> {
    if (visible !== "all" && visible.length === 0) return Promise.resolve([]);
    let query = this.db.selectFrom("tasks").selectAll();
    if (visible !== "all") {
      query = query.where((eb) =>
        eb.or(
          visible.map(({ tenantId, projects }) =>
            projects === "all"
              ? eb("tenant_id", "=", tenantId)
              : eb.and([
                  eb("tenant_id", "=", tenantId),
                  projects.length === 0 ? eb("project_id", "is", null) : eb.or([eb("project_id", "is", null), eb("project_id", "in", [...projects])]),
                ]),
          ),
        ),
      );
    }
    if (filter.status !== undefined) query = query.where("status", "=", filter.status);
    if (filter.tenantId !== undefined) query = query.where("tenant_id", "=", filter.tenantId);
    if (filter.projectId !== undefined) query = query.where("project_id", "=", filter.projectId);
    if (filter.environmentId !== undefined) query = query.where("environment_id", "=", filter.environmentId);
    if (filter.resourceType !== undefined) query = query.where("resource_type", "=", filter.resourceType);
    if (filter.resourceId !== undefined) query = query.where("resource_id", "=", filter.resourceId);
    if (filter.after !== undefined) query = query.where("task_id", ">", filter.after);
    return query.orderBy("task_id").limit(filter.limit).execute();
  }
}
