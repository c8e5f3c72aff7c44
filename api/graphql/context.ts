import type { FastifyBaseLogger } from "fastify";
import type { Kysely } from "kysely";
import type pg from "pg";
import type { EventStore } from "../../adapters/eventstore/port.ts";
import type { ProjectionRunner } from "../../projections/index.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { InventoryReadModel } from "../read/inventory.ts";
import { MaskinReadModel } from "../read/maskin.ts";
import { TaskReadModel } from "../read/tasks.ts";
import { TenancyReadModel } from "../read/tenancy.ts";
import { VmInfraReadModel } from "../read/vm-infra.ts";
import { unauthenticated } from "./errors.ts";
import { createLoaders, tenancyDb, type Loaders } from "./loaders.ts";

/** What resolvers use; built once per server. */
export interface GraphqlServices {
  readonly store: EventStore;
  readonly runner: ProjectionRunner;
  readonly read: TenancyReadModel;
  readonly tasks: TaskReadModel;
  /** Hosts, racks, datacenters (the platform's inventory) and their Maskin lifecycle and power. */
  readonly inventory: InventoryReadModel;
  readonly maskin: MaskinReadModel;
  /** Hypervisors, images, disk images and VMs (maskin_vms, maskin_images). */
  readonly vmInfra: VmInfraReadModel;
  readonly db: Kysely<any>;
  /** How long a mutation waits for the read model to show its write (default 5000 ms). */
  readonly writeWaitMs: number;
}

/** The resolver context: per HTTP request, or per WebSocket connection for subscriptions. */
export interface GraphqlContext {
  /** Set by the authentication plugin (request.actor), or by connection_init for WebSocket. */
  readonly actor: AuthenticatedActor | null;
  /** The request id, which is the correlation id of the commands a mutation sends. */
  readonly correlationId: string;
  readonly services: GraphqlServices;
  readonly loaders: Loaders;
  readonly log: FastifyBaseLogger;
}

export function createServices(deps: {
  pool: pg.Pool;
  db: Kysely<any>;
  store: EventStore;
  runner: ProjectionRunner;
  writeWaitMs?: number;
}): GraphqlServices {
  return {
    store: deps.store,
    runner: deps.runner,
    read: new TenancyReadModel(deps.pool),
    tasks: new TaskReadModel(deps.pool),
    inventory: new InventoryReadModel(deps.pool),
    maskin: new MaskinReadModel(deps.pool),
    vmInfra: new VmInfraReadModel(deps.pool),
    db: deps.db,
    writeWaitMs: deps.writeWaitMs ?? 5_000,
  };
}

export function createContext(
  services: GraphqlServices,
  actor: AuthenticatedActor | null,
  correlationId: string,
  log: FastifyBaseLogger,
): GraphqlContext {
  return { actor, correlationId, services, loaders: createLoaders(tenancyDb(services.db)), log };
}

/** Every operation needs an authenticated actor. */
export function actorOf(context: GraphqlContext): AuthenticatedActor {
  if (!context.actor) throw unauthenticated();
  return context.actor;
}

