import { NO_LIMITS, type QuotaLimits } from "./limits.ts";

/**
 * The tenant aggregate's state: the tenant itself, its projects and their
 * environments, folded from the one tenant stream. Immutable: evolve returns
 * new objects and never touches the old ones.
 */

export interface EnvironmentState {
  readonly environmentId: string;
  readonly projectId: string;
  readonly name: string;
  readonly archived: boolean;
}

export interface ProjectState {
  readonly projectId: string;
  readonly name: string;
  readonly description: string | null;
  readonly archived: boolean;
  readonly limits: QuotaLimits;
  readonly environments: ReadonlyMap<string, EnvironmentState>;
}

export interface AbsentTenant {
  readonly status: "absent";
}

export interface ExistingTenant {
  readonly status: "active" | "suspended";
  readonly tenantId: string;
  readonly name: string;
  readonly displayName: string | null;
  /** Why it is suspended; null while active. */
  readonly suspendedReason: string | null;
  readonly limits: QuotaLimits;
  readonly projects: ReadonlyMap<string, ProjectState>;
}

export type TenantState = AbsentTenant | ExistingTenant;

export const initialTenantState: TenantState = Object.freeze({ status: "absent" });

export function newTenant(tenantId: string, name: string, displayName: string | null): ExistingTenant {
  return {
    status: "active",
    tenantId,
    name,
    displayName,
    suspendedReason: null,
    limits: NO_LIMITS,
    projects: new Map(),
  };
}

/** An event that cannot follow the history before it: the stream is corrupt, not the command wrong. */
export class ImpossibleHistoryError extends Error {
  override readonly name = "ImpossibleHistoryError";
}

export function existing(state: TenantState, eventType: string): ExistingTenant {
  if (state.status === "absent") throw new ImpossibleHistoryError(`${eventType} before TenantCreated`);
  return state;
}

export function projectIn(tenant: ExistingTenant, projectId: string, eventType: string): ProjectState {
  const project = tenant.projects.get(projectId);
  if (!project) throw new ImpossibleHistoryError(`${eventType} for unknown project ${projectId}`);
  return project;
}

export function withProject(tenant: ExistingTenant, project: ProjectState): ExistingTenant {
  const projects = new Map(tenant.projects);
  projects.set(project.projectId, project);
  return { ...tenant, projects };
}

export function withEnvironment(project: ProjectState, environment: EnvironmentState): ProjectState {
  const environments = new Map(project.environments);
  environments.set(environment.environmentId, environment);
  return { ...project, environments };
}

export function activeProjects(tenant: ExistingTenant): ProjectState[] {
  return [...tenant.projects.values()].filter((project) => !project.archived);
}

export function activeProjectNamed(tenant: ExistingTenant, name: string): ProjectState | undefined {
  return activeProjects(tenant).find((project) => project.name === name);
}

export function activeEnvironmentNamed(project: ProjectState, name: string): EnvironmentState | undefined {
  for (const environment of project.environments.values()) {
    if (!environment.archived && environment.name === name) return environment;
  }
  return undefined;
}

/** Environment ids are unique across the whole tenant, not only within a project. */
export function findEnvironment(tenant: ExistingTenant, environmentId: string): EnvironmentState | undefined {
  for (const project of tenant.projects.values()) {
    const environment = project.environments.get(environmentId);
    if (environment) return environment;
  }
  return undefined;
}
