import { DomainError } from "../shared/errors.ts";
import type { ArchiveProject, CreateProject } from "./commands.ts";
import { DEFAULT_ENVIRONMENTS, type TenancyEvent, type TenancyEventOf } from "./events.ts";
import { NO_LIMITS } from "./limits.ts";
import { checkName } from "./names.ts";
import {
  activeProjectNamed,
  existing,
  projectIn,
  withProject,
  type ExistingTenant,
  type ProjectState,
  type TenantState,
} from "./state.ts";
import { requireActiveTenant } from "./tenant.ts";

/**
 * Project rules. The tenant owns the pool of project names: a name is unique
 * among the tenant's non-archived projects, and an archived project's name may
 * be used again by a new project.
 */

export function requireProject(tenant: ExistingTenant, projectId: string): ProjectState | DomainError {
  const project = tenant.projects.get(projectId);
  if (!project) {
    return new DomainError("project_not_found", `project ${projectId} does not exist in tenant ${tenant.name}`, {
      tenantId: tenant.tenantId,
      projectId,
    });
  }
  return project;
}

export function requireActiveProject(tenant: ExistingTenant, projectId: string): ProjectState | DomainError {
  const project = requireProject(tenant, projectId);
  if (project instanceof DomainError) return project;
  if (project.archived) {
    return new DomainError("project_archived", `project ${project.name} is archived`, {
      tenantId: tenant.tenantId,
      projectId,
    });
  }
  return project;
}

export function decideCreateProject(command: CreateProject, state: TenantState): TenancyEvent[] | DomainError {
  const tenant = requireActiveTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  const invalid = checkName("project", command.name);
  if (invalid) return invalid;
  const description = command.description ?? null;

  const same = tenant.projects.get(command.projectId);
  if (same) {
    if (!same.archived && same.name === command.name && same.description === description) return [];
    return new DomainError("project_exists", `project ${command.projectId} exists already (as ${same.name})`, {
      tenantId: tenant.tenantId,
      projectId: command.projectId,
      name: same.name,
      archived: same.archived,
    });
  }

  const holder = activeProjectNamed(tenant, command.name);
  if (holder) {
    return new DomainError(
      "project_name_taken",
      `tenant ${tenant.name} has a project named ${command.name} already`,
      { tenantId: tenant.tenantId, name: command.name, projectId: holder.projectId },
    );
  }

  const created: TenancyEvent = {
    type: "ProjectCreated",
    data: { tenantId: tenant.tenantId, projectId: command.projectId, name: command.name, description },
  };
  if (command.bootstrapTaskId === undefined) return [created];
  return [
    created,
    {
      type: "ProjectBootstrapRequested",
      data: { tenantId: tenant.tenantId, projectId: command.projectId, taskId: command.bootstrapTaskId, environments: [...DEFAULT_ENVIRONMENTS] },
    },
  ];
}

/** A project with live environments is not archived: archive them first, so nothing is orphaned silently. */
export function decideArchiveProject(command: ArchiveProject, state: TenantState): TenancyEvent[] | DomainError {
  const tenant = requireActiveTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  const project = requireProject(tenant, command.projectId);
  if (project instanceof DomainError) return project;
  if (project.archived) return [];

  const live = [...project.environments.values()].filter((environment) => !environment.archived);
  if (live.length > 0) {
    return new DomainError(
      "project_has_active_environments",
      `project ${project.name} still has environments: ${live.map((environment) => environment.name).join(", ")}`,
      {
        tenantId: tenant.tenantId,
        projectId: project.projectId,
        environments: live.map(({ environmentId, name }) => ({ environmentId, name })),
      },
    );
  }
  return [{ type: "ProjectArchived", data: { tenantId: tenant.tenantId, projectId: project.projectId } }];
}

export function evolveProjectCreated(state: TenantState, event: TenancyEventOf<"ProjectCreated">): TenantState {
  const tenant = existing(state, event.type);
  const { projectId, name, description } = event.data;
  return withProject(tenant, {
    projectId,
    name,
    description,
    archived: false,
    limits: NO_LIMITS,
    environments: new Map(),
  });
}

export function evolveProjectArchived(state: TenantState, event: TenancyEventOf<"ProjectArchived">): TenantState {
  const tenant = existing(state, event.type);
  const project = projectIn(tenant, event.data.projectId, event.type);
  return withProject(tenant, { ...project, archived: true });
}
