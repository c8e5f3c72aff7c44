import type { FastifyReply, FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { v7 as uuidv7 } from "uuid";
import { z } from "zod";
import { ConsoleUnavailableError, type ConsoleReply, type VmConsoleRequest } from "../../adapters/workers/hypervisor/console-client.ts";
import { executeVmCommand, loadPortPool, loadVm } from "../../commands/maskin/vm/index.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { executeTaskCommand, taskEnvelopeScope } from "../../commands/task/index.ts";
import { checkVmQuota, DiskImageModeSchema, portsOfVm, DiskTemplateSchema, ResourcesSchema, vmDrift, VM_MAX_NICS, type VmQuota, type VmState } from "../../domain/maskin/vm/index.ts";
import { isDomainError } from "../../domain/shared/errors.ts";
import type { TaskCommandInput } from "../../domain/task/commands.ts";
import type { MaskinVmRow } from "../../projections/maskin/vms.ts";
import { vmCreateTask, vmDeleteTask, vmPowerTask, type VmPowerOperation } from "../../sagas/maskin/vm/index.ts";
import { canSee, canWrite } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { actorOf } from "../http/access.ts";
import type { ReadYourWrites } from "../http/read-your-writes.ts";
import type { ApiMetrics } from "../observability/metrics.ts";
import { ApiProblem } from "../problem.ts";
import { taskVisibility } from "../read/tasks.ts";
import type { TenancyReadModel } from "../read/tenancy.ts";
import type { VmReadModel } from "../read/vms.ts";
import { idempotencyHeader } from "./headers.ts";
import { TaskStartedSchema } from "./hosts-actions.ts";

/**
 * VMs (issue 6). A VM belongs to a tenant's project: whoever can see the
 * project (canSee: platform-admins, auditors of the tenant or platform,
 * tenant-admins, members of that project) reads it; whoever may write there
 * (canWrite: not auditors) creates and acts on it. Anyone else gets 404
 * vm_not_found (project_not_found on create), so other tenants learn nothing.
 *
 * Create checks the project's quota (limits of the project's quota on vms,
 * vcpus, memoryMiB against the usage of its VMs not deleted):
 * 422 quota_exceeded naming the limit, nothing recorded. Then CreateVm and
 * the create task (the same id); 202 with X-Dv-Task and Location of the VM.
 * Start/stop/reboot/reconcile/delete answer 202 with their task.
 * GET console reads the serial log through the VM's hypervisor worker
 * (503 console_unavailable when it does not answer).
 */

export type VmConsoleReader = (request: VmConsoleRequest) => Promise<ConsoleReply>;

export interface VmRouteDeps {
  readonly store: CommandStore;
  readonly tenancy: TenancyReadModel;
  readonly vms: VmReadModel;
  readonly ryw: ReadYourWrites;
  readonly metrics: ApiMetrics;
  /** Serial console reads over NATS; absent: GET console answers 503 console_unavailable. */
  readonly console?: VmConsoleReader | null;
  readonly now?: () => Date;
}

const TAGS = ["vms"];
const TASK_HEADER = "x-dv-task";
const Id = z.string().min(1).max(100);
const Name = z.string().min(1).max(63).regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, { message: "must be a DNS label: lowercase a-z, 0-9 and '-'" });
const VmParams = z.object({ vmId: Id });

const CreateVmBody = z.strictObject({
  name: Name.describe("The VM's name and hostname"),
  tenantId: Id,
  projectId: Id,
  environmentId: Id.optional(),
  datacenter: z.string().min(1).max(63),
  resources: ResourcesSchema,
  image: z.strictObject({ name: z.string().min(1).max(63), version: z.string().min(1).max(63) }).optional().describe("The image the VM boots; absent: its disk template's"),
  disk: z.strictObject({ name: z.string().min(1).max(63), mode: DiskImageModeSchema, template: DiskTemplateSchema.optional() }),
  nics: z.array(z.strictObject({ network: z.string().min(1).max(100).default("user") })).min(1).max(VM_MAX_NICS).default([{ network: "user" }]),
  antiAffinity: z.strictObject({ group: z.string().min(1).max(63), maxPerHypervisor: z.int().positive().default(1) }).optional(),
  spreadGroup: z.string().min(1).max(63).optional(),
  sshAuthorizedKeys: z.array(z.string().min(1).max(16_384)).max(100).default([]).describe("The tenant's SSH public keys for the guest"),
  userData: z.string().max(64 * 1024).optional().describe("cloud-init user data (kept in the task's input: put no secrets here)"),
});

const VmTaskStartedSchema = TaskStartedSchema.extend({ vmId: z.string() });

const VmSchema = z.object({
  vmId: z.string(),
  name: z.string(),
  tenantId: z.string(),
  projectId: z.string(),
  environmentId: z.string().nullable(),
  datacenter: z.string(),
  resources: ResourcesSchema,
  image: z.object({ name: z.string(), version: z.string() }).nullable(),
  state: z.string().describe("requested, placing, provisioning, running, stopped, deleting, deleted or failed"),
  desired: z.string(),
  observed: z.string().nullable().describe("What the hypervisor's observer saw: running, paused, shutdown, absent"),
  observedAt: z.string().nullable(),
  drift: z.string().nullable().describe("not_running, not_stopped, process_after_delete, or null"),
  hypervisor: z.object({ hostId: z.string(), name: z.string() }).nullable(),
  sshPorts: z.array(z.object({ nicIndex: z.number(), port: z.number() })),
  disk: z.object({ name: z.string(), mode: z.string(), attached: z.boolean() }),
  nics: z.array(z.object({ index: z.number(), network: z.string(), mac: z.string() })),
  warnings: z.array(z.object({ field: z.string(), existing: z.string(), requested: z.string() })),
  failureReason: z.string().nullable(),
  taskId: z.string().describe("The task that created the VM"),
});
type VmView = z.infer<typeof VmSchema>;

const ExplainSchema = z.object({
  vmId: z.string(),
  outcome: z.enum(["placed", "blocked", "pending"]),
  chosen: z.unknown().optional(),
  reason: z.string().optional(),
  blocking: z.enum(["soft", "hard"]).optional(),
  rejected: z.array(z.object({ hypervisor: z.string(), hostId: z.string(), reason: z.string(), detail: z.string() })),
});

const ConsoleSchema = z.object({ vmId: z.string(), text: z.string(), offset: z.number(), nextOffset: z.number(), size: z.number() });

const vmNotFound = (vmId: string) => new ApiProblem("vm_not_found", `VM ${vmId} does not exist`, { details: { vmId } }, 404);
const iso = (d: Date | string | null) => (d === null ? null : (d instanceof Date ? d : new Date(d)).toISOString());

function view(row: MaskinVmRow, sshPorts: Array<{ nicIndex: number; port: number }>): VmView {
  return {
    vmId: row.vm_id,
    name: row.name,
    tenantId: row.tenant_id,
    projectId: row.project_id,
    environmentId: row.environment_id,
    datacenter: row.datacenter,
    resources: row.resources,
    image: row.image,
    state: row.lifecycle,
    desired: row.desired,
    observed: row.observed,
    observedAt: iso(row.observed_at),
    drift: row.drift,
    hypervisor: row.host_id ? { hostId: row.host_id, name: row.hypervisor ?? row.host_id } : null,
    sshPorts,
    disk: { name: row.disk_name, mode: row.disk_mode, attached: row.disk_attached },
    nics: row.nics,
    warnings: row.disk_warnings,
    failureReason: row.failure_reason,
    taskId: row.task_id,
  };
}

export const vmRoutes: FastifyPluginAsyncZod<VmRouteDeps> = async (app, deps) => {
  const now = deps.now ?? (() => new Date());

  /** The VM's row when the caller may see it (404 otherwise, also for one not in the read model yet). */
  const visibleVm = async (actor: AuthenticatedActor, vmId: string): Promise<MaskinVmRow> => {
    const row = await deps.vms.getVm(vmId);
    if (!row || !canSee(actor, { tenantId: row.tenant_id, projectId: row.project_id })) throw vmNotFound(vmId);
    return row;
  };
  const writableVm = async (actor: AuthenticatedActor, vmId: string): Promise<MaskinVmRow> => {
    const row = await visibleVm(actor, vmId);
    if (!canWrite(actor, { tenantId: row.tenant_id, projectId: row.project_id })) throw new ApiProblem("forbidden", "your roles do not allow you to change this VM");
    return row;
  };
  const sshPortsOf = async (row: MaskinVmRow) => {
    if (!row.host_id) return [];
    return portsOfVm((await loadPortPool(deps.store, row.host_id)).state, row.vm_id);
  };

  const startTask = async (request: FastifyRequest, reply: FastifyReply, command: TaskCommandInput, vmId: string, location?: string) => {
    if (command.type !== "CreateTask") throw new Error("not a CreateTask");
    const actor = actorOf(request);
    const result = await executeTaskCommand(deps.store, command, { actor: { kind: actor.kind, id: actor.id }, correlationId: request.id, scope: taskEnvelopeScope(command.scope) });
    for (const event of result.events) deps.metrics.eventsAppended.inc({ type: event.type });
    request.log.info({ task: command.taskId, kind: command.kind, resource: command.resource }, "task created");
    await deps.ryw.afterWrite(reply, result.position);
    const taskLocation = `/v1/tasks/${encodeURIComponent(command.taskId)}`;
    reply.header(TASK_HEADER, command.taskId);
    reply.header("location", location ?? taskLocation);
    reply.code(202);
    return { taskId: command.taskId, kind: command.kind, location: taskLocation, vmId };
  };

  const scopeOf = (row: MaskinVmRow) => ({ tenantId: row.tenant_id, projectId: row.project_id, environmentId: row.environment_id });

  app.post(
    "/v1/vms",
    {
      schema: {
        operationId: "createVm",
        summary: "Create a VM (task maskin.vm-create)",
        description:
          "Checks the project's quota (vms, vcpus, memoryMiB): 422 quota_exceeded naming the limit, nothing recorded. " +
          "Then records the VM and starts its create task: placement (explained; blocked while nothing fits), SSH ports, disk image reference, disk, seed, start. " +
          "202 with the task id (X-Dv-Task); Location is the VM.",
        tags: TAGS,
        headers: idempotencyHeader,
        body: CreateVmBody,
        response: { 202: VmTaskStartedSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: async (request) => {
        const actor = actorOf(request);
        const body = request.body as { tenantId?: unknown; projectId?: unknown } | null;
        const tenantId = typeof body?.tenantId === "string" ? body.tenantId : "";
        const projectId = typeof body?.projectId === "string" ? body.projectId : "";
        if (canWrite(actor, { tenantId, projectId })) return;
        if (canSee(actor, { tenantId, projectId })) throw new ApiProblem("forbidden", "your roles do not allow you to create VMs in this project");
        throw new ApiProblem("project_not_found", `project ${projectId} does not exist`, { details: { tenantId, projectId } });
      },
    },
    async (request, reply) => {
      const body = request.body;
      const project = await deps.tenancy.getProject(body.tenantId, body.projectId);
      if (!project) throw new ApiProblem("project_not_found", `project ${body.projectId} does not exist`, { details: { tenantId: body.tenantId, projectId: body.projectId } });
      if (body.environmentId !== undefined && !(await deps.tenancy.getEnvironment(body.tenantId, body.projectId, body.environmentId))) {
        throw new ApiProblem("environment_not_found", `environment ${body.environmentId} does not exist`, { details: { tenantId: body.tenantId, projectId: body.projectId, environmentId: body.environmentId } });
      }
      const limits = (await deps.tenancy.getProjectQuota(body.tenantId, body.projectId))?.limits ?? {};
      const quota: VmQuota = {
        limits: { ...(limits.vms !== undefined ? { vms: limits.vms } : {}), ...(limits.vcpus !== undefined ? { vcpus: limits.vcpus } : {}), ...(limits.memoryMiB !== undefined ? { memoryMiB: limits.memoryMiB } : {}) },
        usage: await deps.vms.usageOf(body.projectId),
      };
      const exceeded = checkVmQuota(body.resources, quota);
      if (exceeded) throw new ApiProblem(exceeded.code, exceeded.message, { details: exceeded.details ?? {} }, 422);

      const actor = actorOf(request);
      const vmId = uuidv7();
      const taskId = uuidv7();
      const at = now();
      const scope = { tenantId: body.tenantId, projectId: body.projectId, environmentId: body.environmentId ?? null };
      try {
        const result = await executeVmCommand(
          deps.store,
          {
            type: "CreateVm",
            vmId,
            name: body.name,
            ...scope,
            datacenter: body.datacenter,
            resources: body.resources,
            image: body.image ?? null,
            disk: { name: body.disk.name, mode: body.disk.mode, template: body.disk.template ?? null },
            nics: body.nics,
            antiAffinity: body.antiAffinity ?? null,
            spreadGroup: body.spreadGroup ?? null,
            quota,
            taskId,
            at: at.toISOString(),
          },
          { actor: { kind: actor.kind, id: actor.id }, correlationId: request.id, scope: { tenantId: body.tenantId, projectId: body.projectId } },
        );
        for (const event of result.events) deps.metrics.eventsAppended.inc({ type: event.type });
      } catch (error) {
        if (isDomainError(error)) throw new ApiProblem(error.code, error.message, { details: error.details ?? {} }, error.code === "quota_exceeded" ? 422 : 409);
        throw error;
      }
      const command = vmCreateTask({
        taskId,
        vmId,
        vmName: body.name,
        datacenter: body.datacenter,
        scope,
        seed: { sshAuthorizedKeys: body.sshAuthorizedKeys, ...(body.userData !== undefined ? { userData: body.userData } : {}) },
        correlationId: request.id,
        now: at,
      });
      return startTask(request, reply, command, vmId, `/v1/vms/${encodeURIComponent(vmId)}`);
    },
  );

  app.get(
    "/v1/vms",
    {
      schema: {
        operationId: "listVms",
        summary: "List the VMs the caller can see (deleted ones left out)",
        description: "Ordered by id; ?tenantId=, ?projectId=, ?environmentId= filter; ?cursor= is the previous page's nextCursor (the last VM id on it).",
        tags: TAGS,
        querystring: z.object({ tenantId: Id.optional(), projectId: Id.optional(), environmentId: Id.optional(), cursor: Id.optional(), limit: z.coerce.number().int().min(1).max(500).default(100) }),
        response: { 200: z.object({ items: z.array(VmSchema), nextCursor: z.string().nullable() }) },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const q = request.query;
      const rows = await deps.vms.listVms(taskVisibility(actorOf(request)), {
        ...(q.tenantId !== undefined ? { tenantId: q.tenantId } : {}),
        ...(q.projectId !== undefined ? { projectId: q.projectId } : {}),
        ...(q.environmentId !== undefined ? { environmentId: q.environmentId } : {}),
        ...(q.cursor !== undefined ? { after: q.cursor } : {}),
        limit: q.limit,
      });
      const items = await Promise.all(rows.map(async (row) => view(row, await sshPortsOf(row))));
      return { items, nextCursor: rows.length === q.limit ? rows[rows.length - 1]!.vm_id : null };
    },
  );

  app.get(
    "/v1/vms/:vmId",
    {
      schema: {
        operationId: "getVm",
        summary: "A VM: state, desired, observed, drift, hypervisor, SSH ports, disk, NICs (MACs), warnings",
        tags: TAGS,
        params: VmParams,
        response: { 200: VmSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const row = await visibleVm(actorOf(request), request.params.vmId);
      return view(row, await sshPortsOf(row));
    },
  );

  app.get(
    "/v1/vms/:vmId/explain",
    {
      schema: {
        operationId: "explainVmPlacement",
        summary: "Why the VM was placed where it is, or why nothing fits now: every hypervisor not chosen with its reason",
        tags: TAGS,
        params: VmParams,
        response: { 200: ExplainSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const row = await visibleVm(actorOf(request), request.params.vmId);
      const p = row.placement;
      if (!p) return { vmId: row.vm_id, outcome: "pending" as const, rejected: [] };
      return {
        vmId: row.vm_id,
        outcome: p.outcome,
        ...(p.chosen !== undefined ? { chosen: p.chosen } : {}),
        ...(p.reason !== undefined ? { reason: p.reason } : {}),
        ...(p.blocking !== undefined ? { blocking: p.blocking } : {}),
        rejected: p.rejected as z.infer<typeof ExplainSchema>["rejected"],
      };
    },
  );

  const power = (operation: VmPowerOperation, summary: string) =>
    app.post(
      `/v1/vms/:vmId/${operation}`,
      {
        schema: {
          operationId: `${operation}Vm`,
          summary,
          tags: TAGS,
          params: VmParams,
          headers: idempotencyHeader,
          body: z.strictObject({ acpiTimeoutMs: z.int().min(0).max(600_000).optional() }).nullish(),
          response: { 202: VmTaskStartedSchema },
        },
        config: { access: { level: "authenticated" } },
      },
      async (request, reply) => {
        const row = await writableVm(actorOf(request), request.params.vmId);
        const state = (await loadVm(deps.store, row.vm_id)).state;
        refuseUnless(state, operation);
        const command = vmPowerTask({
          operation,
          taskId: uuidv7(),
          vmId: row.vm_id,
          vmName: row.name,
          datacenter: row.datacenter,
          scope: scopeOf(row),
          correlationId: request.id,
          now: now(),
          drift: vmDrift(state),
          ...(request.body?.acpiTimeoutMs !== undefined ? { acpiTimeoutMs: request.body.acpiTimeoutMs } : {}),
        });
        return startTask(request, reply, command, row.vm_id);
      },
    );
  power("start", "Start a stopped VM (task maskin.vm-start)");
  power("stop", "Stop a VM: ACPI powerdown, then hard after acpiTimeoutMs (task maskin.vm-stop)");
  power("reboot", "Reset a running VM (task maskin.vm-reboot)");
  power("reconcile", "Act on the VM's drift: start it, stop it, or destroy a process left after deletion; nothing when in sync (task maskin.vm-reconcile)");

  app.delete(
    "/v1/vms/:vmId",
    {
      schema: {
        operationId: "deleteVm",
        summary: "Delete a VM: destroy it, release capacity, SSH ports and the disk image reference (task maskin.vm-delete)",
        tags: TAGS,
        params: VmParams,
        headers: idempotencyHeader,
        response: { 202: VmTaskStartedSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request, reply) => {
      const row = await writableVm(actorOf(request), request.params.vmId);
      const state = (await loadVm(deps.store, row.vm_id)).state;
      if (state.lifecycle === "deleted") throw new ApiProblem("vm_invalid_state", `VM ${row.vm_id} is deleted`, { details: { vmId: row.vm_id, state: "deleted" } }, 409);
      const command = vmDeleteTask({ taskId: uuidv7(), vmId: row.vm_id, vmName: row.name, datacenter: row.datacenter, scope: scopeOf(row), placed: state.placement !== null, correlationId: request.id, now: now() });
      return startTask(request, reply, command, row.vm_id);
    },
  );

  app.get(
    "/v1/vms/:vmId/console",
    {
      schema: {
        operationId: "getVmConsole",
        summary: "Read the VM's serial console from an offset (follow: ask again from nextOffset)",
        tags: TAGS,
        params: VmParams,
        querystring: z.object({ offset: z.coerce.number().int().min(0).default(0), maxBytes: z.coerce.number().int().min(1).max(512 * 1024).default(64 * 1024) }),
        response: { 200: ConsoleSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const row = await visibleVm(actorOf(request), request.params.vmId);
      if (!row.host_id) throw new ApiProblem("vm_not_placed", `VM ${row.vm_id} has no hypervisor yet: no console`, { details: { vmId: row.vm_id } }, 409);
      if (!deps.console) throw new ApiProblem("console_unavailable", "VM consoles cannot be read here (no NATS connection)", {}, 503);
      let reply: ConsoleReply;
      try {
        reply = await deps.console({ datacenter: row.datacenter, hostId: row.host_id, vmId: row.vm_id, offset: request.query.offset, maxBytes: request.query.maxBytes });
      } catch (error) {
        if (error instanceof ConsoleUnavailableError) throw new ApiProblem("console_unavailable", error.message, { details: { hostId: row.host_id } }, 503);
        throw error;
      }
      if ("error" in reply) throw new ApiProblem("console_unavailable", reply.error, { details: { hostId: row.host_id } }, 503);
      return { vmId: row.vm_id, text: reply.text, offset: request.query.offset, nextOffset: reply.nextOffset, size: reply.size };
    },
  );
};

/** The operations a VM's state allows (409 otherwise; the sagas check again). */
function refuseUnless(state: VmState, operation: VmPowerOperation): void {
  const lifecycle = state.lifecycle;
  const ok =
    operation === "reconcile"
      ? lifecycle === "running" || lifecycle === "stopped" || lifecycle === "deleted"
      : operation === "reboot"
        ? lifecycle === "running"
        : lifecycle === "running" || lifecycle === "stopped";
  if (!ok) throw new ApiProblem("vm_invalid_state", `VM ${state.vm?.vmId} is ${lifecycle}: ${operation} is not possible now`, { details: { vmId: state.vm?.vmId, state: lifecycle } }, 409);
}

