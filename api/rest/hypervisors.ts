import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { v7 as uuidv7 } from "uuid";
import { z } from "zod";
import { executeCapacityCommand, loadHypervisor } from "../../commands/maskin/vm/index.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { drainReport, freeCapacity, type HypervisorState } from "../../domain/maskin/vm/index.ts";
import { isPlatformAdmin } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { actorOf } from "../http/access.ts";
import { decodeCursor, PageQuerySchema, pageSchema, toPage } from "../http/pagination.ts";
import type { ApiMetrics } from "../observability/metrics.ts";
import { canReadVmInfra, hypervisorView, type HypervisorView, type VmInfraReadModel } from "../read/vm-infra.ts";
import { idempotencyHeader } from "./headers.ts";
import { apiSchemas } from "./schemas.ts";
import { forbidden, notFound, platformContext, ResourcesSchema, Timestamp } from "./vm-infra-common.ts";

/**
 * Hypervisors: inventory hosts with `role: hypervisor` (the inventory import
 * registers their capacity) as Maskin's capacity aggregate sees them.
 *
 * Who: platform readers (platform-admins, platform auditors) read; only
 * platform-admins cordon, uncordon and drain. Anyone else: a hypervisor
 * answers 404 like a missing one, the list 403 (like /v1/hosts).
 *
 * Reads come from the maskin_vms read model (eventually consistent: a GET
 * right after a change may not show it yet). Cordon, uncordon and drain are
 * synchronous: they decide on the hypervisor's own stream and answer with
 * its state right after, read from that stream; the same call again changes
 * nothing. Drain cordons the hypervisor (if it was not) and answers the
 * report of the VMs that must move; moving them is not done here.
 */
export interface HypervisorRouteDeps {
  readonly store: CommandStore;
  readonly read: VmInfraReadModel;
  readonly metrics: ApiMetrics;
  readonly now?: () => Date;
}

const TAGS = ["hypervisors"];

export const HypervisorSchema = z.object({
  hostId: z.string(),
  name: z.string(),
  datacenter: z.string(),
  capacity: ResourcesSchema.describe("Physical: hardware threads, MiB, GiB (from the inventory)"),
  overcommit: z.object({ cpu: z.number(), memory: z.number(), disk: z.number() }).describe("The datacenter's ratios"),
  allocatable: ResourcesSchema.describe("floor(capacity × overcommit)"),
  used: ResourcesSchema.describe("Sum of the reservations"),
  free: ResourcesSchema.describe("allocatable − used (negative when capacity was lowered below what is reserved)"),
  vmCount: z.number().int(),
  reservations: z.array(z.object({ vmId: z.string(), resources: ResourcesSchema, groups: z.array(z.string()), taskId: z.string(), at: z.string() })),
  cordoned: z.boolean().describe("No new VMs are placed here"),
  cordonReason: z.string().nullable(),
  drainTaskId: z.string().nullable(),
  orphans: z.array(z.string()).describe("QEMU processes on the host with no VM record (VM ids), as last observed"),
  updatedAt: Timestamp,
  version: z.number().int(),
});
apiSchemas.add(HypervisorSchema, { id: "Hypervisor" });

export const DrainReportSchema = z.object({
  hostId: z.string(),
  drainId: z.string().describe("Names this drain request (the HypervisorDrainRequested event's taskId)"),
  cordoned: z.boolean(),
  vms: z.array(z.object({ vmId: z.string(), resources: ResourcesSchema, groups: z.array(z.string()) })).describe("What must move before the hypervisor is empty, sorted by VM id"),
  used: ResourcesSchema,
});
apiSchemas.add(DrainReportSchema, { id: "HypervisorDrainReport" });

const HostParams = z.object({ hostId: z.string().min(1).max(100) });
const ReasonBody = z.strictObject({ reason: z.string().min(1).max(500) });
const EmptyBody = z.strictObject({}).nullish();
const ListQuery = PageQuerySchema.extend({ datacenter: z.string().min(1).max(63).optional() });

export const hypervisorNotFound = (hostId: string) => notFound("hypervisor_not_found", `hypervisor ${hostId} does not exist`, { hostId });

/** The view of the aggregate's state (answers of the writes, read from the stream). */
function viewOfState(state: HypervisorState, version: number, at: Date): HypervisorView {
  return {
    hostId: state.hostId ?? "",
    name: state.name,
    datacenter: state.datacenter,
    capacity: state.capacity,
    overcommit: state.overcommit,
    allocatable: state.allocatable,
    used: state.used,
    free: freeCapacity(state),
    vmCount: state.reservations.size,
    reservations: [...state.reservations.values()]
      .sort((a, b) => (a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0))
      .map((r) => ({ vmId: r.vmId, resources: r.resources, groups: [...r.groups], taskId: r.taskId, at: r.at })),
    cordoned: state.cordon !== null,
    cordonReason: state.cordon?.reason ?? null,
    drainTaskId: state.drain?.taskId ?? null,
    orphans: [...((state as { orphans?: { vmIds: readonly string[] } | null }).orphans?.vmIds ?? [])],
    updatedAt: at.toISOString(),
    version,
  };
}

function refuse(actor: AuthenticatedActor, hostId: string, what: string): never {
  if (canReadVmInfra(actor)) throw forbidden(what);
  throw hypervisorNotFound(hostId);
}

const requirePlatformAdmin = (what: string) => async (request: FastifyRequest) => {
  const actor = actorOf(request);
  if (!isPlatformAdmin(actor)) refuse(actor, (request.params as { hostId: string }).hostId, what);
};

export const hypervisorRoutes: FastifyPluginAsyncZod<HypervisorRouteDeps> = async (app, deps) => {
  const now = deps.now ?? (() => new Date());

  /** The registered hypervisor's state from its stream (404 when not registered). */
  const registered = async (hostId: string) => {
    const loaded = await loadHypervisor(deps.store, hostId);
    if (loaded.state.hostId === null) throw hypervisorNotFound(hostId);
    return loaded;
  };

  const act = async (request: FastifyRequest, hostId: string, command: Record<string, unknown>) => {
    const { state } = await registered(hostId);
    const result = await executeCapacityCommand(deps.store, { hostId, at: now().toISOString(), ...command }, platformContext(request, state.datacenter));
    for (const event of result.events) deps.metrics.eventsAppended.inc({ type: event.type });
    return result;
  };

  app.get(
    "/v1/hypervisors",
    {
      schema: {
        operationId: "listHypervisors",
        summary: "List hypervisors (platform readers)",
        description: "Ordered by host id; ?datacenter= filters. From the maskin_vms read model.",
        tags: TAGS,
        querystring: ListQuery,
        response: { 200: pageSchema(HypervisorSchema) },
      },
      config: { access: { level: "authenticated" } },
      preValidation: async (request) => {
        if (!canReadVmInfra(actorOf(request))) throw forbidden("see the platform's hypervisors (it needs platform-admin or a platform auditor)");
      },
    },
    async (request) => {
      const { limit, cursor, datacenter } = request.query;
      const after = decodeCursor("hypervisors", cursor);
      const rows = await deps.read.listHypervisors({ limit: limit + 1, ...(after !== undefined ? { after } : {}), ...(datacenter !== undefined ? { datacenter } : {}) });
      return toPage("hypervisors", rows, limit, (row) => row.host_id, hypervisorView);
    },
  );

  app.get(
    "/v1/hypervisors/:hostId",
    {
      schema: {
        operationId: "getHypervisor",
        summary: "A hypervisor: capacity, allocatable, used, free, reservations, cordon, orphans",
        description: "Platform readers; 404 for anyone else, like a missing one.",
        tags: TAGS,
        params: HostParams,
        response: { 200: HypervisorSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const { hostId } = request.params;
      if (!canReadVmInfra(actorOf(request))) throw hypervisorNotFound(hostId);
      const row = await deps.read.getHypervisor(hostId);
      if (!row) throw hypervisorNotFound(hostId);
      return hypervisorView(row);
    },
  );

  app.post(
    "/v1/hypervisors/:hostId/cordon",
    {
      schema: {
        operationId: "cordonHypervisor",
        summary: "Cordon a hypervisor: no new VMs are placed on it (platform-admin)",
        description: "Synchronous; cordoning a cordoned hypervisor changes nothing (the first reason stays). Answers the hypervisor's state.",
        tags: TAGS,
        params: HostParams,
        headers: idempotencyHeader,
        body: ReasonBody,
        response: { 200: HypervisorSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: requirePlatformAdmin("cordon a hypervisor"),
    },
    async (request) => {
      const { hostId } = request.params;
      await act(request, hostId, { type: "CordonHypervisor", reason: request.body.reason });
      const { state, version } = await registered(hostId);
      return viewOfState(state, Number(version), now());
    },
  );

  app.post(
    "/v1/hypervisors/:hostId/uncordon",
    {
      schema: {
        operationId: "uncordonHypervisor",
        summary: "Uncordon a hypervisor: VMs may be placed on it again (platform-admin)",
        description: "Synchronous; also ends a drain. Uncordoning one that is not cordoned changes nothing.",
        tags: TAGS,
        params: HostParams,
        headers: idempotencyHeader,
        body: EmptyBody,
        response: { 200: HypervisorSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: requirePlatformAdmin("uncordon a hypervisor"),
    },
    async (request) => {
      const { hostId } = request.params;
      await act(request, hostId, { type: "UncordonHypervisor" });
      const { state, version } = await registered(hostId);
      return viewOfState(state, Number(version), now());
    },
  );

  app.post(
    "/v1/hypervisors/:hostId/drain",
    {
      schema: {
        operationId: "drainHypervisor",
        summary: "Drain a hypervisor: cordon it and report the VMs that must move (platform-admin)",
        description:
          "Synchronous. Records HypervisorDrainRequested with the VMs holding capacity there now and answers that report; " +
          "the VMs are not moved by this call. Send an Idempotency-Key to make a retry answer the same drain.",
        tags: TAGS,
        params: HostParams,
        headers: idempotencyHeader,
        body: ReasonBody,
        response: { 200: DrainReportSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: requirePlatformAdmin("drain a hypervisor"),
    },
    async (request) => {
      const { hostId } = request.params;
      const drainId = uuidv7();
      const result = await act(request, hostId, { type: "DrainHypervisor", taskId: drainId, reason: request.body.reason });
      const requested = result.events.find((e) => e.type === "HypervisorDrainRequested");
      const { state } = await registered(hostId);
      const report = drainReport(state);
      return {
        hostId,
        drainId,
        cordoned: report.cordoned,
        vms: requested?.type === "HypervisorDrainRequested" ? requested.data.vms : report.vms.map((v) => ({ ...v, groups: [...v.groups] })),
        used: report.used,
      };
    },
  );
};
