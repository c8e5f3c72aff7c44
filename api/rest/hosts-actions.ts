import type { FastifyReply, FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { v7 as uuidv7 } from "uuid";
import { z } from "zod";
import { executeHostCommand } from "../../commands/maskin/index.ts";
import { loadStream, type CommandStore } from "../../commands/pipeline.ts";
import { executeTaskCommand, taskEnvelopeScope } from "../../commands/task/index.ts";
import { isDomainError } from "../../domain/shared/errors.ts";
import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import type { TaskCommandInput } from "../../domain/task/commands.ts";
import { taskEventSchemas, type TaskEvent } from "../../domain/task/events.ts";
import { taskStreamId } from "../../domain/task/stream.ts";
import type { HostRow } from "../../projections/sentral/inventory.ts";
import { beginHostRelease, bmcCheckTask, hostPowerTask, hostProvisionTask, hostReleaseTask, loadHost, loadPool, POWER_OPERATIONS } from "../../sagas/maskin/index.ts";
import { canAdministerTenant, isPlatformAdmin } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { actorOf } from "../http/access.ts";
import type { ReadYourWrites } from "../http/read-your-writes.ts";
import type { ApiMetrics } from "../observability/metrics.ts";
import { ApiProblem } from "../problem.ts";
import { canReadInventory, type InventoryReadModel } from "../read/inventory.ts";
import { hostStatusView, type MaskinReadModel } from "../read/maskin.ts";
import type { TenancyReadModel } from "../read/tenancy.ts";
import { hostNotFound } from "./inventory.ts";
import { idempotencyHeader } from "./headers.ts";

/**
 * Host actions: each starts a task (202, its id in `X-Dv-Task` and the body;
 * follow it at /v1/tasks/{taskId} or with `--wait`). Task ids are UUIDv7s
 * made here; with an Idempotency-Key a repeated request replays the first
 * answer (the same task).
 *
 * Who may do what (hosts are platform inventory):
 * - provision: a platform-admin, any host for any tenant's project; a
 *   tenant-admin of the body's tenant, only a host that is free right now
 *   (a host that is not, like one that does not exist, answers 404
 *   host_not_found to them: they cannot see the inventory). A held host
 *   fails a platform-admin's task with `host_not_free` (the pool decides,
 *   race-free).
 * - release: a platform-admin, or a tenant-admin of the tenant the host is
 *   provisioned for; the task is scoped to that project. 409 host_not_releasable
 *   while another task provisions or releases it.
 * - power, bmc-check: platform-admins (platform tasks).
 * - status, task outputs (GET): platform readers (platform-admins and
 *   auditors), like the inventory. A task's step outputs (the BMC's answer
 *   and the exchange summary of a bmc-check) are not in the tasks read
 *   model: GET /v1/hosts/{hostId}/tasks/{taskId}/outputs reads them from the
 *   task's stream.
 * Anyone else: 404 host_not_found (403 for platform auditors, who can see hosts).
 */
export interface HostActionRouteDeps {
  readonly store: CommandStore;
  /** The tenancy read model: the project (and environment) a host is provisioned for must exist. */
  readonly tenancy: TenancyReadModel;
  readonly inventory: InventoryReadModel;
  /** The maskin hosts read model: lifecycle, power and drift (GET /v1/hosts/{hostId}/status). */
  readonly maskin: MaskinReadModel;
  /** Read-your-writes on the tasks projection (a task is readable when we answer). */
  readonly ryw: ReadYourWrites;
  readonly metrics: ApiMetrics;
  readonly now?: () => Date;
}

const TAGS = ["hosts"];
const TASK_HEADER = "x-dv-task";

const HostParams = z.object({ hostId: z.string().min(1).max(100) });
const Id = z.string().min(1).max(100);

const ProvisionBody = z.strictObject({
  tenantId: Id,
  projectId: Id,
  environmentId: Id.optional(),
  role: z.enum(["worker", "controlplane"]).default("worker").describe("The Talos machine role the host is installed with"),
});
const ReleaseBody = z.strictObject({}).nullish();
const PowerBody = z.strictObject({
  operation: z.enum(POWER_OPERATIONS).describe("on/off/soft converge (nothing happens when the host is there already); cycle/reset act"),
});
const EmptyBody = z.strictObject({}).nullish();

export const TaskStartedSchema = z.object({
  taskId: z.string().describe("Follow it at /v1/tasks/{taskId}"),
  kind: z.string(),
  location: z.string(),
});

export const HostStatusSchema = z.object({
  hostId: z.string(),
  state: z.string().describe("available, provisioning, ready, provision_failed, releasing or release_failed (a release task failed: release the host again)"),
  stage: z.string().nullable().describe("The provisioning stage: allocated, netboot-requested, netboot-fetched, installed, install-failed"),
  taskId: z.string().nullable().describe("The task acting on the host now"),
  tenantId: z.string().nullable(),
  projectId: z.string().nullable(),
  environmentId: z.string().nullable(),
  role: z.string().nullable(),
  power: z.object({
    desired: z.enum(["on", "off"]).nullable(),
    observed: z.enum(["on", "off"]).nullable().describe("Accepted only when two consecutive BMC reads agree"),
    observedAt: z.string().nullable(),
    drift: z.boolean().describe("Observed and desired are both known and differ"),
    driftSince: z.string().nullable(),
  }),
  nextBoot: z.enum(["pxe", "disk"]).nullable(),
  netbootFetchedAt: z.string().nullable(),
  installReportedAt: z.string().nullable(),
  failureReason: z.string().nullable(),
  wipe: z
    .object({
      stage: z.string().describe("requested, netboot-fetched, wiped or wipe-failed"),
      taskId: z.string().nullable().describe("The release task whose wipe this is"),
      requestedAt: z.string().nullable(),
      netbootFetchedAt: z.string().nullable().describe("When the host fetched the wipe image"),
      reportedAt: z.string().nullable().describe("When the wiper reported (null: it did not, e.g. its task failed first)"),
      message: z.string().nullable(),
      devices: z.array(z.string()),
      bytesWiped: z.number().nullable(),
    })
    .nullable()
    .describe("The current or last wipe of the host's disks by a release; null before any"),
  releaseFailure: z
    .object({ taskId: z.string().nullable(), reason: z.string(), at: z.string().nullable() })
    .nullable()
    .describe("Why the last release failed (state release_failed); null once another release starts"),
});

const TaskOutputsSchema = z.object({
  taskId: z.string(),
  kind: z.string(),
  steps: z.array(z.object({ name: z.string(), output: z.record(z.string(), z.unknown()).nullable().describe("null until the step completed") })),
});

const forbidden = (what: string) => new ApiProblem("forbidden", `your roles do not allow you to ${what}`);

/** Who cannot even see hosts gets the missing host's 404; platform readers without the right get 403. */
function refuse(actor: AuthenticatedActor, hostId: string, what: string): never {
  if (canReadInventory(actor)) throw forbidden(what);
  throw hostNotFound(hostId);
}

const requirePlatformAdmin = (what: string) => async (request: FastifyRequest) => {
  const actor = actorOf(request);
  if (!isPlatformAdmin(actor)) refuse(actor, (request.params as { hostId: string }).hostId, what);
};

function asConflict(error: unknown): never {
  if (isDomainError(error)) throw new ApiProblem(error.code, error.message, { details: error.details ?? {} }, 409);
  throw error;
}

export const hostActionRoutes: FastifyPluginAsyncZod<HostActionRouteDeps> = async (app, deps) => {
  const now = deps.now ?? (() => new Date());

  const inventoryHost = async (hostId: string): Promise<HostRow> => {
    const row = await deps.inventory.getHost(hostId);
    if (!row) throw hostNotFound(hostId);
    return row;
  };

  /** Creates the task, waits (bounded) until /v1/tasks shows it, answers 202 with its id. */
  const start = async (request: FastifyRequest, reply: FastifyReply, command: TaskCommandInput) => {
    if (command.type !== "CreateTask") throw new Error("not a CreateTask");
    const actor = actorOf(request);
    const result = await executeTaskCommand(deps.store, command, {
      actor: { kind: actor.kind, id: actor.id },
      correlationId: request.id,
      scope: taskEnvelopeScope(command.scope),
    });
    for (const event of result.events) deps.metrics.eventsAppended.inc({ type: event.type });
    request.log.info({ task: command.taskId, kind: command.kind, resource: command.resource }, "task created");
    await deps.ryw.afterWrite(reply, result.position);
    const location = `/v1/tasks/${encodeURIComponent(command.taskId)}`;
    reply.header(TASK_HEADER, command.taskId);
    reply.header("location", location);
    reply.code(202);
    return { taskId: command.taskId, kind: command.kind, location };
  };

  app.get(
    "/v1/hosts/:hostId/status",
    {
      schema: {
        operationId: "getHostStatus",
        summary: "A host's lifecycle state, provisioning stage, power (desired, observed) and drift",
        description: "From the maskin.hosts read model; platform readers only (404 for anyone else, like the host).",
        tags: TAGS,
        params: HostParams,
        response: { 200: HostStatusSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const { hostId } = request.params;
      if (!canReadInventory(actorOf(request))) throw hostNotFound(hostId);
      await inventoryHost(hostId);
      return hostStatusView(hostId, await deps.maskin.getHost(hostId));
    },
  );

  app.get(
    "/v1/hosts/:hostId/tasks/:taskId/outputs",
    {
      schema: {
        operationId: "getHostTaskOutputs",
        summary: "What the steps of a task on this host answered (e.g. a bmc-check's power state and BMC exchanges)",
        description: "Platform readers only; a task that is not about this host answers 404 task_not_found.",
        tags: TAGS,
        params: HostParams.extend({ taskId: z.string().min(1).max(100) }),
        response: { 200: TaskOutputsSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const { hostId, taskId } = request.params;
      if (!canReadInventory(actorOf(request))) throw hostNotFound(hostId);
      await inventoryHost(hostId);
      const { events } = await loadStream<TaskEvent>(deps.store, taskStreamId(taskId), taskEventSchemas);
      const created = events.find((e) => e.type === "TaskCreated");
      if (created?.type !== "TaskCreated" || created.data.resource.type !== "host" || created.data.resource.id !== hostId) {
        throw new ApiProblem("task_not_found", `task ${taskId} does not exist`, { details: { taskId } });
      }
      const outputs = new Map<string, Record<string, unknown>>();
      for (const event of events) if (event.type === "TaskStepCompleted") outputs.set(event.data.step, event.data.output);
      return { taskId, kind: created.data.kind, steps: created.data.steps.map((step) => ({ name: step.name, output: outputs.get(step.name) ?? null })) };
    },
  );

  app.post(
    "/v1/hosts/:hostId/provision",
    {
      schema: {
        operationId: "provisionHost",
        summary: "Provision a bare-metal host for a project (task maskin.host-provision)",
        description:
          "Allocates the host, sets boot PXE, powers it on, waits for its netboot and the installer's report, sets boot disk. " +
          "A platform-admin may provision any host; a tenant-admin of the body's tenant only a free one (else 404). " +
          "202 with the task id (X-Dv-Task); a host another task holds fails the task with host_not_free.",
        tags: TAGS,
        params: HostParams,
        headers: idempotencyHeader,
        body: ProvisionBody,
        response: { 202: TaskStartedSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: async (request) => {
        // Decided before the body is validated: whoever may not provision learns nothing from a 400.
        const actor = actorOf(request);
        const tenantId = (request.body as { tenantId?: unknown } | null)?.tenantId;
        if (isPlatformAdmin(actor)) return;
        if (typeof tenantId === "string" && canAdministerTenant(actor, tenantId)) return;
        refuse(actor, (request.params as { hostId: string }).hostId, "provision this host");
      },
    },
    async (request, reply) => {
      const actor = actorOf(request);
      const { hostId } = request.params;
      const { tenantId, projectId, environmentId, role } = request.body;
      const host = await inventoryHost(hostId);
      if (!isPlatformAdmin(actor)) {
        const state = await loadHost(deps.store, hostId);
        const held = (await loadPool(deps.store, host.datacenter)).allocations.has(hostId);
        if (state.state !== "available" || held) throw hostNotFound(hostId);
      }
      const project = await deps.tenancy.getProject(tenantId, projectId);
      if (!project) throw new ApiProblem("project_not_found", `project ${projectId} does not exist`, { details: { tenantId, projectId } });
      if (environmentId !== undefined && !(await deps.tenancy.getEnvironment(tenantId, projectId, environmentId))) {
        throw new ApiProblem("environment_not_found", `environment ${environmentId} does not exist`, { details: { tenantId, projectId, environmentId } });
      }
      return start(
        request,
        reply,
        hostProvisionTask({
          taskId: uuidv7(),
          hostId,
          hostName: host.name,
          datacenter: host.datacenter,
          tenantId,
          projectId,
          environmentId: environmentId ?? null,
          role,
          correlationId: request.id,
          now: now(),
        }),
      );
    },
  );

  app.post(
    "/v1/hosts/:hostId/release",
    {
      schema: {
        operationId: "releaseHost",
        summary: "Release a host: power off, wipe, back to the free pool (task maskin.host-release)",
        description:
          "A platform-admin, or a tenant-admin of the tenant the host is provisioned for. 409 host_not_releasable while another task " +
          "provisions or releases it. 202 with the task id (X-Dv-Task).",
        tags: TAGS,
        params: HostParams,
        headers: idempotencyHeader,
        body: ReleaseBody,
        response: { 202: TaskStartedSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request, reply) => {
      const actor = actorOf(request);
      const { hostId } = request.params;
      const host = isPlatformAdmin(actor) ? await inventoryHost(hostId) : await deps.inventory.getHost(hostId);
      if (!host || !isPlatformAdmin(actor)) {
        const state = host ? await loadHost(deps.store, hostId) : null;
        const holder = state && state.state !== "available" ? state.provisioning : null;
        if (!host || !holder || !canAdministerTenant(actor, holder.tenantId)) refuse(actor, hostId, "release this host");
      }
      const taskId = uuidv7();
      const at = now();
      const scope = await beginHostRelease(deps.store, { hostId, taskId, actor: { kind: actor.kind, id: actor.id }, correlationId: request.id, now: at }).catch(asConflict);
      return start(request, reply, hostReleaseTask({ taskId, hostId, hostName: host!.name, datacenter: host!.datacenter, scope, correlationId: request.id, now: at }));
    },
  );

  app.post(
    "/v1/hosts/:hostId/power",
    {
      schema: {
        operationId: "powerHost",
        summary: "Power a host on, off, soft off, cycle or reset (platform-admin; task maskin.host-power)",
        description: "The worker reads the BMC first: on/off/soft do nothing when the host is there already. On/off/soft also set the host's desired power (drift is measured against it).",
        tags: TAGS,
        params: HostParams,
        headers: idempotencyHeader,
        body: PowerBody,
        response: { 202: TaskStartedSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: requirePlatformAdmin("change a host's power"),
    },
    async (request, reply) => {
      const actor = actorOf(request);
      const { hostId } = request.params;
      const { operation } = request.body;
      const host = await inventoryHost(hostId);
      const taskId = uuidv7();
      const at = now();
      const desired = operation === "off" || operation === "soft" ? "off" : operation === "on" ? "on" : null;
      if (desired) {
        await executeHostCommand(
          deps.store,
          { type: "SetDesiredPower", hostId, state: desired, taskId, at: at.toISOString() },
          { actor: { kind: actor.kind, id: actor.id }, correlationId: request.id, scope: { tenantId: PLATFORM_TENANT }, datacenter: host.datacenter },
        );
      }
      return start(request, reply, hostPowerTask({ taskId, hostId, hostName: host.name, datacenter: host.datacenter, operation, correlationId: request.id, now: at }));
    },
  );

  app.post(
    "/v1/hosts/:hostId/bmc-check",
    {
      schema: {
        operationId: "checkHostBmc",
        summary: "Ask the host's BMC for its power status (platform-admin; task maskin.bmc-check)",
        description: "The task's step output shows the observed power state and the BMC exchange summary (command, duration, exit code).",
        tags: TAGS,
        params: HostParams,
        headers: idempotencyHeader,
        body: EmptyBody,
        response: { 202: TaskStartedSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: requirePlatformAdmin("check a host's BMC"),
    },
    async (request, reply) => {
      const { hostId } = request.params;
      const host = await inventoryHost(hostId);
      return start(request, reply, bmcCheckTask({ taskId: uuidv7(), hostId, hostName: host.name, datacenter: host.datacenter, correlationId: request.id, now: now() }));
    },
  );
};
