import { defaultEnvironmentId } from "../../commands/sentral/bootstrap.ts";
import { executeTenancyCommand, tenantHandler } from "../../commands/sentral/tenancy.ts";
import { loadStream, type CommandStore } from "../../commands/pipeline.ts";
import { tenancyDecider } from "../../domain/sentral/decider.ts";
import { DEFAULT_ENVIRONMENTS, ProjectBootstrapRequestedSchema, type TenancyEvent } from "../../domain/sentral/events.ts";
import { QUOTA_RESOURCES, type QuotaLimitsPatch } from "../../domain/sentral/limits.ts";
import { TENANT_STREAM_PREFIX, tenantStreamId } from "../../domain/sentral/stream.ts";
import type { ExistingTenant } from "../../domain/sentral/state.ts";
import { fold } from "../../domain/shared/decider.ts";
import { DomainError } from "../../domain/shared/errors.ts";
import type { Actor } from "../../domain/shared/envelope.ts";
import type { TaskCommandInput } from "../../domain/task/commands.ts";
import type { ExistingTask } from "../../domain/task/state.ts";
import { defineSaga, sagaPlan, type InlineStep, type TriggerEvent } from "../runtime/types.ts";

/**
 * Project bootstrap: a project created with default environments gets `dev`
 * and `prod`, then the tenant's quota as its own, as a task the user can
 * watch. Every step converges: it reads the tenant first and does only what
 * is missing, so running a step twice (after a crash) changes nothing twice.
 *
 * "The tenant's default quota" is the tenant's own limits: a new project may
 * use at most what its tenant may. A tenant without limits leaves the
 * project unlimited (within the tenant) and the step records that.
 */

export const PROJECT_BOOTSTRAP_KIND = "sentral.project-bootstrap";
/** How long a bootstrap may take before it fails with what it was waiting for. */
export const PROJECT_BOOTSTRAP_DEADLINE_MS = 10 * 60_000;

export interface ProjectBootstrapDeps {
  readonly store: CommandStore;
}

const SAGA_ACTOR: Actor = { kind: "service", id: "saga/project-bootstrap" };

interface BootstrapInput {
  readonly tenantId: string;
  readonly projectId: string;
  readonly correlationId: string;
}

function inputOf(task: ExistingTask): BootstrapInput {
  const input = task.input as Partial<BootstrapInput>;
  if (typeof input.tenantId !== "string" || typeof input.projectId !== "string") {
    throw new DomainError("invalid_task_input", `task ${task.taskId} lacks tenantId/projectId in its input`, { taskId: task.taskId });
  }
  return { tenantId: input.tenantId, projectId: input.projectId, correlationId: input.correlationId ?? task.taskId };
}

async function loadTenant(store: CommandStore, tenantId: string): Promise<ExistingTenant> {
  const loaded = await loadStream<TenancyEvent>(store, tenantStreamId(tenantId), tenantHandler.eventSchemas);
  const state = fold(tenancyDecider, loaded.events);
  if (state.status === "absent") throw new DomainError("tenant_not_found", `tenant ${tenantId} does not exist`, { tenantId });
  return state;
}

function context(task: ExistingTask, input: BootstrapInput) {
  return {
    actor: SAGA_ACTOR,
    correlationId: input.correlationId,
    causationId: task.taskId,
    scope: { tenantId: input.tenantId, projectId: input.projectId },
  };
}

function createEnvironmentStep(name: string): InlineStep<ProjectBootstrapDeps> {
  return {
    title: `Create environment ${name}`,
    async run(task, deps) {
      const input = inputOf(task);
      const tenant = await loadTenant(deps.store, input.tenantId);
      const present = [...(tenant.projects.get(input.projectId)?.environments.values() ?? [])].find((e) => e.name === name && !e.archived);
      if (present) return { environmentId: present.environmentId, created: false };
      const environmentId = defaultEnvironmentId(task.taskId, name);
      await executeTenancyCommand(
        deps.store,
        { type: "CreateEnvironment", tenantId: input.tenantId, projectId: input.projectId, environmentId, name },
        context(task, input),
      );
      return { environmentId, created: true };
    },
  };
}

const applyTenantQuota: InlineStep<ProjectBootstrapDeps> = {
  title: "Apply the tenant's quota",
  async run(task, deps) {
    const input = inputOf(task);
    const tenant = await loadTenant(deps.store, input.tenantId);
    const limits: QuotaLimitsPatch = {};
    for (const resource of QUOTA_RESOURCES) {
      const limit = tenant.limits[resource];
      if (limit !== undefined) limits[resource] = limit;
    }
    if (Object.keys(limits).length === 0) return { limits: {}, note: "the tenant has no limits: the project is limited by nothing but the tenant" };
    // An unchanged quota appends nothing, so a repeated step is harmless.
    await executeTenancyCommand(deps.store, { type: "SetProjectQuota", tenantId: input.tenantId, projectId: input.projectId, limits }, context(task, input));
    return { limits };
  },
};

const steps = {
  ...Object.fromEntries(DEFAULT_ENVIRONMENTS.map((name) => [`create-${name}`, createEnvironmentStep(name)])),
  "apply-quota": applyTenantQuota,
};

/**
 * The task a ProjectBootstrapRequested event asks for. Creating it is
 * idempotent (the task id comes from the event), so a redelivered request
 * creates nothing twice.
 */
export function projectBootstrapTask(event: TriggerEvent, now: Date): TaskCommandInput {
  const { tenantId, projectId, taskId } = ProjectBootstrapRequestedSchema.parse(event.data);
  return {
    type: "CreateTask",
    taskId,
    kind: PROJECT_BOOTSTRAP_KIND,
    title: "Bootstrap project: default environments and quota",
    resource: { type: "project", id: projectId },
    scope: { tenantId, projectId, environmentId: null },
    steps: sagaPlan({ kind: PROJECT_BOOTSTRAP_KIND, steps }),
    deadline: new Date(now.getTime() + PROJECT_BOOTSTRAP_DEADLINE_MS).toISOString(),
    input: { tenantId, projectId, correlationId: event.correlationId },
    at: now.toISOString(),
  };
}

export const projectBootstrapSaga = defineSaga<ProjectBootstrapDeps>({
  kind: PROJECT_BOOTSTRAP_KIND,
  steps,
  triggers: [{ name: "project-bootstrap", eventType: "ProjectBootstrapRequested", streamPrefix: TENANT_STREAM_PREFIX, start: projectBootstrapTask }],
});
