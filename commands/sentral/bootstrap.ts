import { v5 as uuidv5 } from "uuid";

/** Fixed namespace for ids derived from tenancy ids (RFC 9562 name-based UUIDs). */
const BOOTSTRAP_NAMESPACE = "7d0b6c2e-5f4a-4b8e-9a57-2f1f0c9d3e11";

/**
 * The id of the task that bootstraps a project. Derived from the project, so
 * a retried create names the same task instead of one that never runs.
 */
export function projectBootstrapTaskId(tenantId: string, projectId: string): string {
  return uuidv5(`project-bootstrap:${tenantId}/${projectId}`, BOOTSTRAP_NAMESPACE);
}

/** The id of a default environment the bootstrap creates: stable, so a repeated step creates nothing twice. */
export function defaultEnvironmentId(taskId: string, name: string): string {
  return uuidv5(`default-environment:${taskId}/${name}`, BOOTSTRAP_NAMESPACE);
}
