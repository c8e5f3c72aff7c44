import type { RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { formatPosition } from "../../../adapters/eventstore/position.ts";
import { DATACENTER_EVENT_TYPES } from "../../../domain/inventory/events.ts";
import { DATACENTER_STREAM_PREFIX } from "../../../domain/inventory/stream.ts";
import { HOST_EVENT_TYPES, MASKIN_HOST_STREAM_PREFIX } from "../../../domain/maskin/index.ts";
import type { MaskinHostRow } from "../../../projections/maskin/hosts.ts";
import type { HostRow, RackRow } from "../../../projections/sentral/inventory.ts";
import { canReadInventory } from "../../read/inventory.ts";
import { hostStatusView } from "../../read/maskin.ts";
import { pageRequest, toConnection } from "../connections.ts";
import { actorOf, type GraphqlContext } from "../context.ts";
import { ClientError } from "../errors.ts";
import { filteredEvents, startPosition } from "../subscriptions.ts";
import type { ResolverMap, SubscriptionResolver } from "./types.ts";

/**
 * Hosts, racks and datacenters over GraphQL: the inventory read model joined
 * with the maskin hosts read model (lifecycle, stage, power, drift). Like
 * REST, the inventory is the platform's: platform-admins and platform
 * auditors see it; to anyone else `host` is null (as for a missing id) and
 * the lists are empty; `hostChanged` refuses them with FORBIDDEN.
 */

const iso = (value: Date | string | null | undefined) => (value === null || value === undefined ? null : value instanceof Date ? value : new Date(value));
const upper = (value: string | null) => (value === null ? null : value.toUpperCase());

export function hostView(row: HostRow, maskin: MaskinHostRow | undefined) {
  const status = hostStatusView(row.host_id, maskin);
  return {
    hostId: row.host_id,
    name: row.name,
    datacenter: row.datacenter,
    rack: row.rack,
    position: row.position,
    serial: row.serial,
    vendor: row.vendor,
    model: row.model,
    macs: row.macs,
    role: row.role,
    bmc: row.bmc ? { driver: row.bmc.driver, address: row.bmc_address, port: row.bmc.port, username: row.bmc.username, hasCredential: row.bmc.credentialRef !== null } : null,
    state: status.state,
    stage: status.stage,
    taskId: status.taskId,
    tenantId: status.tenantId,
    projectId: status.projectId,
    environmentId: status.environmentId,
    provisionRole: status.role,
    power: {
      desired: upper(status.power.desired),
      observed: upper(status.power.observed),
      observedAt: iso(status.power.observedAt),
      drift: status.power.drift,
      driftSince: iso(status.power.driftSince),
    },
    nextBoot: status.nextBoot,
    netbootFetchedAt: iso(status.netbootFetchedAt),
    installReportedAt: iso(status.installReportedAt),
    failureReason: status.failureReason,
  };
}

const reader = (context: GraphqlContext) => canReadInventory(actorOf(context));

async function hostViews(context: GraphqlContext, rows: readonly HostRow[]) {
  const maskin = await context.services.maskin.getHosts(rows.map((row) => row.host_id));
  return rows.map((row) => hostView(row, maskin.get(row.host_id)));
}

async function racksOf(context: GraphqlContext, datacenter: string) {
  const contents = await context.services.inventory.datacenterContents(datacenter);
  const hosts = await context.services.inventory.listHosts({ datacenter, limit: 10_000 });
  const views = await hostViews(context, hosts);
  return contents.racks.map((rack: RackRow) => ({
    name: rack.name,
    datacenter,
    room: rack.room,
    hosts: views.filter((host) => host.rack === rack.name),
  }));
}

interface HostChangeView {
  readonly hostId: string;
  readonly datacenter: string | null;
  readonly eventType: string;
  readonly position: string;
  readonly occurredAt: Date;
}

const MASKIN_TYPES = new Set<string>(HOST_EVENT_TYPES);
const INVENTORY_HOST_TYPES = new Set<string>(DATACENTER_EVENT_TYPES.filter((type) => type.startsWith("Host")));

/** A host's change from an event of the log, or undefined when the event is about no host. */
function hostChangeOf(event: RecordedEvent): HostChangeView | undefined {
  const data = (event.data ?? {}) as { hostId?: unknown; datacenter?: unknown };
  if (typeof data.hostId !== "string") return undefined;
  const maskin = event.streamId.startsWith(MASKIN_HOST_STREAM_PREFIX) && MASKIN_TYPES.has(event.type);
  const inventory = event.streamId.startsWith(DATACENTER_STREAM_PREFIX) && INVENTORY_HOST_TYPES.has(event.type);
  if (!maskin && !inventory) return undefined;
  const datacenter = typeof data.datacenter === "string" ? data.datacenter : (event.datacenter ?? null);
  return { hostId: data.hostId, datacenter, eventType: event.type, position: formatPosition(event), occurredAt: new Date(event.occurredAt) };
}

const hostChanged: SubscriptionResolver<{ datacenter?: string | null; afterPosition?: string | null }, HostChangeView> = {
  subscribe: async (_root, args, context) => {
    if (!reader(context)) throw new ClientError("FORBIDDEN", "your roles do not allow you to see the platform's inventory (it needs platform-admin or a platform auditor)");
    const datacenter = args.datacenter ?? undefined;
    const after = await startPosition(args.afterPosition, () => context.services.store.headPosition());
    return filteredEvents(
      context.services.store.subscribe({ after }),
      (event) => {
        const change = hostChangeOf(event);
        if (!change) return undefined;
        // An event that names no datacenter (a power observation recorded without one) passes every filter: a change too many, never one missed.
        if (datacenter !== undefined && change.datacenter !== null && change.datacenter !== datacenter) return undefined;
        return change;
      },
      context.log,
      after,
    );
  },
  resolve: (payload) => payload,
};

export const hostResolvers: ResolverMap = {
  Query: {
    host: async (_root: unknown, args: { id: string }, context: GraphqlContext) => {
      if (!reader(context)) return null;
      const row = await context.services.inventory.getHost(args.id);
      if (!row) return null;
      return hostView(row, await context.services.maskin.getHost(row.host_id));
    },
    hosts: async (_root: unknown, args: { datacenter?: string | null; rack?: string | null; first?: number | null; after?: string | null }, context: GraphqlContext) => {
      const list = "hosts";
      const page = pageRequest(list, args);
      if (!reader(context)) return toConnection(list, [], page.first, (row: HostRow) => row.host_id, (row) => row);
      const rows = await context.services.inventory.listHosts({
        limit: page.first + 1,
        ...(page.after !== undefined ? { after: page.after } : {}),
        ...(args.datacenter ? { datacenter: args.datacenter } : {}),
        ...(args.rack ? { rack: args.rack } : {}),
      });
      const maskin = await context.services.maskin.getHosts(rows.map((row) => row.host_id));
      return toConnection(list, rows, page.first, (row) => row.host_id, (row) => hostView(row, maskin.get(row.host_id)));
    },
    datacenters: async (_root: unknown, _args: unknown, context: GraphqlContext) => {
      if (!reader(context)) return [];
      const rows = await context.services.inventory.listDatacenters({ limit: 1_000 });
      return Promise.all(rows.map(async (row) => ({ name: row.name, displayName: row.display_name, region: row.region, racks: await racksOf(context, row.name) })));
    },
    racks: async (_root: unknown, args: { datacenter: string }, context: GraphqlContext) => {
      if (!reader(context)) return [];
      return racksOf(context, args.datacenter);
    },
  },
  HostChange: {
    host: async (change: HostChangeView, _args: unknown, context: GraphqlContext) => {
      const row = await context.services.inventory.getHost(change.hostId);
      return row ? hostView(row, await context.services.maskin.getHost(row.host_id)) : null;
    },
  },
  Subscription: { hostChanged },
};
