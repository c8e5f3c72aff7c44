import type { RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { formatPosition } from "../../../adapters/eventstore/position.ts";
import { isTenancyEventType, type TenancyEventType } from "../../../domain/sentral/events.ts";
import { canReadHistory, canSee, visibleTenants } from "../../auth/policy.ts";
import type { AuthenticatedActor } from "../../auth/types.ts";
import { actorOf, type GraphqlContext } from "../context.ts";
import { ClientError } from "../errors.ts";
import { environmentGlobalId, projectGlobalId, tenantGlobalId } from "../ids.ts";
import { filteredEvents, startPosition } from "../subscriptions.ts";
import type { ResolverMap, SubscriptionResolver } from "./types.ts";

interface ResourceChangeView {
  readonly kind: "TENANT" | "PROJECT" | "ENVIRONMENT";
  readonly id: string;
  readonly tenantId: string;
  readonly projectId: string | null;
  readonly environmentId: string | null;
  readonly eventType: string;
  readonly eventId: string;
  readonly position: string;
  readonly occurredAt: Date;
}

interface EventView {
  readonly id: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly streamId: string;
  readonly streamPosition: number;
  readonly position: string;
  readonly occurredAt: Date;
  readonly correlationId: string;
  readonly causationId: string | null;
  readonly actor: { readonly kind: string; readonly id: string };
  readonly scope: { readonly tenantId: string; readonly projectId: string | null; readonly environmentId: string | null };
  readonly datacenter: string | null;
  readonly data: unknown;
}

/** Which resource a tenancy event changed. A quota change is a change of its tenant or project. */
const KIND_OF: Record<TenancyEventType, ResourceChangeView["kind"]> = {
  TenantCreated: "TENANT",
  TenantRenamed: "TENANT",
  TenantSuspended: "TENANT",
  TenantResumed: "TENANT",
  TenantQuotaSet: "TENANT",
  ProjectCreated: "PROJECT",
  ProjectArchived: "PROJECT",
  ProjectBootstrapRequested: "PROJECT",
  ProjectQuotaSet: "PROJECT",
  EnvironmentCreated: "ENVIRONMENT",
  EnvironmentArchived: "ENVIRONMENT",
};

function resourceChange(event: RecordedEvent): ResourceChangeView | undefined {
  if (!isTenancyEventType(event.type)) return undefined;
  const data = event.data as { tenantId: string; projectId?: string; environmentId?: string };
  const kind = KIND_OF[event.type];
  const id =
    kind === "TENANT"
      ? tenantGlobalId(data.tenantId)
      : kind === "PROJECT"
        ? projectGlobalId(data.tenantId, data.projectId!)
        : environmentGlobalId(data.tenantId, data.projectId!, data.environmentId!);
  return {
    kind,
    id,
    tenantId: data.tenantId,
    projectId: data.projectId ?? null,
    environmentId: data.environmentId ?? null,
    eventType: event.type,
    eventId: event.id,
    position: formatPosition(event),
    occurredAt: event.occurredAt,
  };
}

function eventView(event: RecordedEvent): EventView {
  return {
    id: event.id,
    type: event.type,
    schemaVersion: event.schemaVersion,
    streamId: event.streamId,
    streamPosition: event.streamPosition,
    position: formatPosition(event),
    occurredAt: event.occurredAt,
    correlationId: event.correlationId,
    causationId: event.causationId,
    actor: { kind: event.actor.kind, id: event.actor.id },
    scope: {
      tenantId: event.scope.tenantId,
      projectId: event.scope.projectId ?? null,
      environmentId: event.scope.environmentId ?? null,
    },
    datacenter: event.datacenter,
    data: event.data,
  };
}

/** May the actor read any tenant's raw history at all (auditors and admins)? */
function readsSomeHistory(actor: AuthenticatedActor): boolean {
  const tenants = visibleTenants(actor);
  return tenants === "all" || tenants.some((tenantId) => canReadHistory(actor, tenantId));
}

/** Errors the caller may see pass; anything else is logged and masked (the subscribe path bypasses the formatter). */
async function guarded<T>(context: GraphqlContext, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ClientError) throw error;
    context.log.error({ err: error }, "subscription failed to start");
    throw new ClientError("INTERNAL_SERVER_ERROR", `internal error; quote correlation id ${context.correlationId}`);
  }
}

const resourceChanged: SubscriptionResolver<{ tenantId: string; projectId?: string | null; afterPosition?: string | null }, ResourceChangeView> = {
  subscribe: (_root, args, context) =>
    guarded(context, async () => {
      const actor = actorOf(context);
      const { tenantId } = args;
      const projectId = args.projectId ?? undefined;
      // Invisible answers exactly as missing: the same error, decided before any row is read.
      if (projectId === undefined) {
        if (!canSee(actor, { tenantId }) || !(await context.services.read.getTenant(tenantId))) {
          throw new ClientError("NOT_FOUND", `tenant ${tenantId} does not exist`);
        }
      } else if (!canSee(actor, { tenantId, projectId }) || !(await context.services.read.getProject(tenantId, projectId))) {
        throw new ClientError("NOT_FOUND", `project ${projectId} does not exist`);
      }
      const after = await startPosition(args.afterPosition, () => context.services.store.headPosition());
      return filteredEvents(
        context.services.store.subscribe({ after }),
        (event) => {
          if (event.scope.tenantId !== tenantId || !canSee(actor, event.scope)) return undefined;
          if (projectId !== undefined && event.scope.projectId !== projectId) return undefined;
          return resourceChange(event);
        },
        context.log,
        after,
      );
    }),
  resolve: (payload) => payload,
};

const events: SubscriptionResolver<{ streamId?: string | null; afterPosition?: string | null }, EventView> = {
  subscribe: (_root, args, context) =>
    guarded(context, async () => {
      const actor = actorOf(context);
      const streamId = args.streamId ?? undefined;
      if (streamId === undefined) {
        if (!readsSomeHistory(actor)) {
          throw new ClientError("FORBIDDEN", "reading event history needs an auditor or admin role");
        }
      } else {
        // A stream belongs to the tenant its events are filed under; one the actor may not read does not exist for it.
        const [first] = await context.services.store.readStream(streamId, { limit: 1 });
        if (!first || !canReadHistory(actor, first.scope.tenantId)) {
          throw new ClientError("NOT_FOUND", `stream ${streamId} does not exist`);
        }
      }
      const after = await startPosition(args.afterPosition, () => context.services.store.headPosition());
      return filteredEvents(
        context.services.store.subscribe({ after }),
        (event) => {
          if (streamId !== undefined && event.streamId !== streamId) return undefined;
          if (!canReadHistory(actor, event.scope.tenantId) || !canSee(actor, event.scope)) return undefined;
          return eventView(event);
        },
        context.log,
        after,
      );
    }),
  resolve: (payload) => payload,
};

export const eventResolvers: ResolverMap = {
  Subscription: { resourceChanged, events },
};
