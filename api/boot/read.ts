import { Kysely, PostgresDialect, sql } from "kysely";
import type pg from "pg";
import { loadStream, type CommandStore } from "../../commands/pipeline.ts";
import { hostDecider, hostEventSchemas, hostStreamId, type HostEvent, type HostProvisioning, type HostState } from "../../domain/maskin/index.ts";
import { inventoryProjection, liveSchema, tenancyProjection } from "../../projections/index.ts";
import type { InventoryTables } from "../../projections/sentral/inventory.ts";
import type { TenancyTables } from "../../projections/sentral/tenancy.ts";

/**
 * What the boot service reads:
 * - the inventory read model, to find a host by one of its (approved) MACs
 *   and to name it;
 * - the host's own stream (`maskin-host-<hostId>`), folded with the host
 *   decider, to know whether it is being provisioned and which token is
 *   current. Not a read model: a machine that was told "boot pxe" a moment
 *   ago must not be sent to its disk because a projection lags;
 * - the tenancy read model, to name the cluster after the project and
 *   environment.
 */
export interface BootHost {
  readonly hostId: string;
  readonly name: string;
  readonly datacenter: string;
  readonly macs: readonly string[];
}

export class BootReadModel {
  private readonly inventory: Kysely<InventoryTables>;
  private readonly tenancy: Kysely<TenancyTables>;

  constructor(pool: pg.Pool, private readonly store: Pick<CommandStore, "readStream">) {
    const dialect = new PostgresDialect({ pool });
    this.inventory = new Kysely<InventoryTables>({ dialect }).withSchema(liveSchema(inventoryProjection));
    this.tenancy = new Kysely<TenancyTables>({ dialect }).withSchema(liveSchema(tenancyProjection));
  }

  /** The host holding this MAC (normal form), if any. */
  async hostByMac(mac: string): Promise<BootHost | undefined> {
    const row = await this.inventory
      .selectFrom("hosts")
      .select(["host_id", "name", "datacenter", "macs"])
      .where(sql<boolean>`macs @> ${JSON.stringify([mac])}::jsonb`)
      .orderBy("host_id")
      .executeTakeFirst();
    return row ? { hostId: row.host_id, name: row.name, datacenter: row.datacenter, macs: row.macs } : undefined;
  }

  async host(hostId: string): Promise<BootHost | undefined> {
    const row = await this.inventory.selectFrom("hosts").select(["host_id", "name", "datacenter", "macs"]).where("host_id", "=", hostId).executeTakeFirst();
    return row ? { hostId: row.host_id, name: row.name, datacenter: row.datacenter, macs: row.macs } : undefined;
  }

  /** The host aggregate's state now, from its stream. */
  async hostState(hostId: string): Promise<HostState> {
    const loaded = await loadStream<HostEvent>(this.store, hostStreamId(hostId), hostEventSchemas);
    return loaded.events.reduce(hostDecider.evolve, hostDecider.initialState);
  }

  /**
   * The cluster a provisioned node joins: `<project name>` or `<project
   * name>-<environment name>` (names are DNS labels), cut to 63 characters;
   * the ids stand in when the read model does not have them (yet).
   */
  async clusterName(p: Pick<HostProvisioning, "tenantId" | "projectId" | "environmentId">): Promise<string> {
    const project = await this.tenancy
      .selectFrom("projects")
      .select("name")
      .where("tenant_id", "=", p.tenantId)
      .where("project_id", "=", p.projectId)
      .executeTakeFirst();
    let name = project?.name ?? p.projectId;
    if (p.environmentId !== null) {
      const environment = await this.tenancy
        .selectFrom("environments")
        .select("name")
        .where("tenant_id", "=", p.tenantId)
        .where("project_id", "=", p.projectId)
        .where("environment_id", "=", p.environmentId)
        .executeTakeFirst();
      name = `${name}-${environment?.name ?? p.environmentId}`;
    }
    return dnsLabel(name);
  }
}

/** Lowercase, [a-z0-9-], at most 63, no leading/trailing '-'. */
export function dnsLabel(value: string): string {
  const label = value.toLowerCase().replace(/[^a-z0-9-]+/g, "-").slice(0, 63).replace(/^-+|-+$/g, "");
  return label || "cluster";
}
