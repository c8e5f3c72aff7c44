import { DomainError } from "../shared/errors.ts";
import type { ArchiveEnvironment, CreateEnvironment } from "./commands.ts";
import type { TenancyEvent, TenancyEventOf } from "./events.ts";
import { checkName } from "./names.ts";
import { requireActiveProject, requireProject } from "./project.ts";
import {
  activeEnvironmentNamed,
  existing,
  findEnvironment,
  projectIn,
  withEnvironment,
  withProject,
  ImpossibleHistoryError,
  type TenantState,
} from "./state.ts";
import { requireActiveTenant } from "./tenant.ts";

/**
 * Environment rules. A project owns its environment names: unique among the
 * project's non-archived environments; an archived environment's name may be
 * used again. Environment ids are unique across the tenant.
 */

export function decideCreateEnvironment(command: CreateEnvironment, state: TenantState): TenancyEvent[] | DomainError {
  const tenant = requireActiveTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  const project = requireActiveProject(tenant, command.projectId);
  if (project instanceof DomainError) return project;
  const invalid = checkName("environment", command.name);
  if (invalid) return invalid;

  const same = findEnvironment(tenant, command.environmentId);
  if (same) {
    if (same.projectId === project.projectId && !same.archived && same.name === command.name) return [];
    return new DomainError(
      "environment_exists",
      `environment ${command.environmentId} exists already (as ${same.name})`,
      {
        tenantId: tenant.tenantId,
        projectId: same.projectId,
        environmentId: command.environmentId,
        name: same.name,
        archived: same.archived,
      },
    );
  }

  const holder = activeEnvironmentNamed(project, command.name);
  if (holder) {
    return new DomainError(
      "environment_name_taken",
      `project ${project.name} has an environment named ${command.name} already`,
      { tenantId: tenant.tenantId, projectId: project.projectId, name: command.name, environmentId: holder.environmentId },
    );
  }

  return [
    {
      type: "EnvironmentCreated",
      data: {
        tenantId: tenant.tenantId,
        projectId: project.projectId,
        environmentId: command.environmentId,
        name: command.name,
      },
    },
  ];
}

export function decideArchiveEnvironment(command: ArchiveEnvironment, state: TenantState): TenancyEvent[] | DomainError {
  const tenant = requireActiveTenant(state, command.tenantId);
  if (tenant instanceof DomainError) return tenant;
  // Not requireActiveProject: an archived project's environments are all archived, so this is then a no-op.
  const project = requireProject(tenant, command.projectId);
  if (project instanceof DomainError) return project;
  const environment = project.environments.get(command.environmentId);
  if (!environment) {
    return new DomainError(
      "environment_not_found",
      `environment ${command.environmentId} does not exist in project ${project.name}`,
      { tenantId: tenant.tenantId, projectId: project.projectId, environmentId: command.environmentId },
    );
  }
  if (environment.archived) return [];
  return [
    {
      type: "EnvironmentArchived",
      data: { tenantId: tenant.tenantId, projectId: project.projectId, environmentId: environment.environmentId },
    },
  ];
}

export function evolveEnvironmentCreated(state: TenantState, event: TenancyEventOf<"EnvironmentCreated">): TenantState {
  const tenant = existing(state, event.type);
  const { projectId, environmentId, name } = event.data;
  const project = projectIn(tenant, projectId, event.type);
  return withProject(tenant, withEnvironment(project, { environmentId, projectId, name, archived: false }));
}

export function evolveEnvironmentArchived(state: TenantState, event: TenancyEventOf<"EnvironmentArchived">): TenantState {
  const tenant = existing(state, event.type);
  const { projectId, environmentId } = event.data;
  const project = projectIn(tenant, projectId, event.type);
  const environment = project.environments.get(environmentId);
  if (!environment) throw new ImpossibleHistoryError(`${event.type} for unknown environment ${environmentId}`);
  return withProject(tenant, withEnvironment(project, { ...environment, archived: true }));
}
