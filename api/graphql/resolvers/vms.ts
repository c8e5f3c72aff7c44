import type { RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { formatPosition } from "../../../adapters/eventstore/position.ts";
import { MASKIN_VM_STREAM_PREFIX, VM_EVENT_TYPES } from "../../../domain/maskin/vm/index.ts";
import type { MaskinDiskImageRow, MaskinHypervisorRow, MaskinVmRow } from "../../../projections/maskin/vms.ts";
import { canSee, visibleProjects } from "../../auth/policy.ts";
import {
  canReadVmInfra,
  diskImageReferenceView,
  diskImageView,
  hypervisorView,
  imageViews,
  visibleReferences,
  vmVisibility,
  type DiskImageView,
  type ImageVersionView,
} from "../../read/vm-infra.ts";
import { pageRequest, toConnection } from "../connections.ts";
import { actorOf, type GraphqlContext } from "../context.ts";
import { ClientError } from "../errors.ts";
import { filteredEvents, startPosition } from "../subscriptions.ts";
import type { ResolverMap, SubscriptionResolver } from "./types.ts";

/**
 * Hypervisors, images, disk images and VMs over GraphQL, with the same
 * visibility as REST (api/read/vm-infra.ts): hypervisors are the platform
 * readers' (null / empty for anyone else), images anyone's (sources only for
 * platform readers), disk images the platform readers' and, while their VMs
 * reference them, the tenant's; VMs their project's readers'.
 * VMs are read from maskin_vms.vms through VmInfraReadModel.
 */

const date = (value: Date | string | null) => (value === null ? null : value instanceof Date ? value : new Date(value));

function hypervisorNode(row: MaskinHypervisorRow) {
  const view = hypervisorView(row);
  return { ...view, reservations: view.reservations.map((r) => ({ ...r, at: new Date(r.at) })), updatedAt: new Date(view.updatedAt) };
}

function imageVersionNode(reveal: boolean, v: ImageVersionView) {
  const part = (p: { source: unknown; digest: string }) => ({ source: reveal ? p.source : null, digest: p.digest });
  return {
    ...v,
    source: reveal ? v.source : null,
    boot: v.boot ? { kernel: part(v.boot.kernel), initrd: part(v.boot.initrd), cmdline: v.boot.cmdline } : null,
    registeredAt: new Date(v.registeredAt),
  };
}

interface DiskImageNode extends Omit<DiskImageView, "template" | "deletionRequestedAt" | "deletedAt" | "createdAt" | "updatedAt"> {
  readonly template: { imageName: string; imageVersion: string; sizeGiB: number; storageClass: string };
  readonly deletionRequestedAt: Date | null;
  readonly deletedAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

function diskImageNode(row: MaskinDiskImageRow): DiskImageNode {
  const view = diskImageView(row);
  return {
    ...view,
    template: { imageName: view.template.image.name, imageVersion: view.template.image.version, sizeGiB: view.template.sizeGiB, storageClass: view.template.storageClass },
    deletionRequestedAt: date(view.deletionRequestedAt),
    deletedAt: date(view.deletedAt),
    createdAt: new Date(view.createdAt),
    updatedAt: new Date(view.updatedAt),
  };
}

export function vmNode(row: MaskinVmRow) {
  return {
    vmId: row.vm_id,
    name: row.name,
    tenantId: row.tenant_id,
    projectId: row.project_id,
    environmentId: row.environment_id,
    datacenter: row.datacenter,
    resources: row.resources,
    image: row.image,
    lifecycle: row.lifecycle,
    desired: row.desired,
    observed: row.observed,
    observedAt: date(row.observed_at),
    drift: row.drift,
    hostId: row.host_id,
    hypervisor: row.hypervisor,
    placement: row.placement ? { ...row.placement, chosen: row.placement.chosen ?? null, reason: row.placement.reason ?? null, blocking: row.placement.blocking ?? null } : null,
    diskName: row.disk_name,
    diskMode: row.disk_mode,
    diskAttached: row.disk_attached,
    diskWarnings: row.disk_warnings,
    nics: row.nics,
    failureReason: row.failure_reason,
    taskId: row.task_id,
    createdAt: date(row.created_at),
    updatedAt: date(row.updated_at),
  };
}

const canSeeVm = (context: GraphqlContext, row: MaskinVmRow) => canSee(actorOf(context), { tenantId: row.tenant_id, projectId: row.project_id });

interface VmChangeView {
  readonly vmId: string;
  readonly tenantId: string;
  readonly projectId: string;
  readonly eventType: string;
  readonly position: string;
  readonly occurredAt: Date;
}

const VM_TYPES = new Set<string>(VM_EVENT_TYPES);

/** A VM's change from an event of the log (scope from the envelope: every VM event is filed under its VM's scope). */
function vmChangeOf(event: RecordedEvent): VmChangeView | undefined {
  if (!event.streamId.startsWith(MASKIN_VM_STREAM_PREFIX) || !VM_TYPES.has(event.type)) return undefined;
  const projectId = event.scope.projectId;
  if (projectId === undefined) return undefined;
  return {
    vmId: event.streamId.slice(MASKIN_VM_STREAM_PREFIX.length),
    tenantId: event.scope.tenantId,
    projectId,
    eventType: event.type,
    position: formatPosition(event),
    occurredAt: new Date(event.occurredAt),
  };
}

const vmChanged: SubscriptionResolver<{ tenantId: string; projectId?: string | null; afterPosition?: string | null }, VmChangeView> = {
  subscribe: async (_root, args, context) => {
    const actor = actorOf(context);
    const tenantId = args.tenantId;
    const projectId = args.projectId ?? undefined;
    // Invisible answers exactly as missing: canSee depends on the caller's roles only.
    if (!canSee(actor, { tenantId })) throw new ClientError("NOT_FOUND", `tenant ${tenantId} does not exist`);
    if (projectId !== undefined && !canSee(actor, { tenantId, projectId })) throw new ClientError("NOT_FOUND", `project ${projectId} does not exist`);
    const projects = visibleProjects(actor, tenantId);
    const after = await startPosition(args.afterPosition, () => context.services.store.headPosition());
    return filteredEvents(
      context.services.store.subscribe({ after }),
      (event) => {
        const change = vmChangeOf(event);
        if (!change || change.tenantId !== tenantId) return undefined;
        if (projectId !== undefined && change.projectId !== projectId) return undefined;
        if (projects !== "all" && !projects.includes(change.projectId)) return undefined;
        return change;
      },
      context.log,
      after,
    );
  },
  resolve: (payload) => payload,
};

type QuotaWithUsage = { usageOf?: readonly [string, string] };

export const vmResolvers: ResolverMap = {
  Query: {
    hypervisors: async (_root: unknown, args: { datacenter?: string | null; first?: number | null; after?: string | null }, context: GraphqlContext) => {
      const list = "hypervisors";
      const page = pageRequest(list, args);
      if (!canReadVmInfra(actorOf(context))) return toConnection(list, [], page.first, (row: MaskinHypervisorRow) => row.host_id, hypervisorNode);
      const rows = await context.services.vmInfra.listHypervisors({
        limit: page.first + 1,
        ...(page.after !== undefined ? { after: page.after } : {}),
        ...(args.datacenter ? { datacenter: args.datacenter } : {}),
      });
      return toConnection(list, rows, page.first, (row) => row.host_id, hypervisorNode);
    },
    hypervisor: async (_root: unknown, args: { hostId: string }, context: GraphqlContext) => {
      if (!canReadVmInfra(actorOf(context))) return null;
      const row = await context.services.vmInfra.getHypervisor(args.hostId);
      return row ? hypervisorNode(row) : null;
    },
    images: async (_root: unknown, _args: unknown, context: GraphqlContext) => {
      const reveal = canReadVmInfra(actorOf(context));
      const names = await context.services.vmInfra.listImageNames({ limit: 10_000 });
      return imageViews(await context.services.vmInfra.listImageVersions(names)).map((image) => ({ name: image.name, versions: image.versions.map((v) => imageVersionNode(reveal, v)) }));
    },
    diskImages: async (_root: unknown, args: { datacenter?: string | null; first?: number | null; after?: string | null }, context: GraphqlContext) => {
      const list = "disk-images";
      const page = pageRequest(list, args);
      const actor = actorOf(context);
      const after = page.after === undefined ? undefined : (JSON.parse(page.after) as { d: string; n: string });
      const rows = await context.services.vmInfra.listDiskImages({
        limit: page.first + 1,
        visibility: canReadVmInfra(actor) ? "all" : vmVisibility(actor),
        ...(args.datacenter ? { datacenter: args.datacenter } : {}),
        ...(after ? { after: { datacenter: after.d, name: after.n } } : {}),
      });
      return toConnection(list, rows, page.first, (row) => JSON.stringify({ d: row.datacenter, n: row.name }), diskImageNode);
    },
    vms: async (_root: unknown, args: { tenantId?: string | null; projectId?: string | null; first?: number | null; after?: string | null }, context: GraphqlContext) => {
      const list = "vms";
      const page = pageRequest(list, args);
      const rows = await context.services.vmInfra.listVms({
        visibility: vmVisibility(actorOf(context)),
        limit: page.first + 1,
        ...(page.after !== undefined ? { after: page.after } : {}),
        ...(args.tenantId ? { tenantId: args.tenantId } : {}),
        ...(args.projectId ? { projectId: args.projectId } : {}),
      });
      return toConnection(list, rows, page.first, (row) => row.vm_id, vmNode);
    },
    vm: async (_root: unknown, args: { id: string }, context: GraphqlContext) => {
      actorOf(context);
      const row = await context.services.vmInfra.getVm(args.id);
      return row && canSeeVm(context, row) ? vmNode(row) : null;
    },
  },
  DiskImage: {
    referencedBy: async (disk: DiskImageNode, _args: unknown, context: GraphqlContext) => {
      const rows = visibleReferences(actorOf(context), await context.services.vmInfra.diskImageReferences(disk.datacenter, disk.name));
      return rows.map((row) => {
        const view = diskImageReferenceView(row);
        return { ...view, addedByEventId: view.addedBy.eventId, addedByPosition: view.addedBy.position, taskId: view.addedBy.taskId, addedAt: new Date(view.addedBy.at) };
      });
    },
  },
  VmChange: {
    vm: async (change: VmChangeView, _args: unknown, context: GraphqlContext) => {
      const row = await context.services.vmInfra.getVm(change.vmId);
      return row ? vmNode(row) : null;
    },
  },
  Quota: {
    usage: (quota: QuotaWithUsage, _args: unknown, context: GraphqlContext) =>
      quota.usageOf ? context.services.vmInfra.projectVmUsage(quota.usageOf[0], quota.usageOf[1]) : null,
  },
  Subscription: { vmChanged },
};
