import { Kysely, PostgresDialect } from "kysely";
import type pg from "pg";
import { inventoryProjection, liveSchema } from "../../projections/index.ts";
import type { DatacenterRow, HostRow, InventoryTables, LinkRow, RackRow, SwitchRow } from "../../projections/sentral/inventory.ts";
import { isPlatformAdmin, isPlatformAuditor } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";

/**
 * The API's only way into the inventory read model (schema `inventory`).
 * Inventory is the platform's own: platform-admins and platform auditors
 * read it; nobody else sees any of it (see api/rest/inventory.ts).
 */
export function canReadInventory(actor: AuthenticatedActor): boolean {
  return isPlatformAdmin(actor) || isPlatformAuditor(actor);
}

export interface HostListFilter {
  readonly datacenter?: string;
  readonly rack?: string;
  readonly name?: string;
  readonly pendingApproval?: boolean;
  readonly after?: string;
  readonly limit: number;
}

export class InventoryReadModel {
  private readonly db: Kysely<InventoryTables>;

  constructor(pool: pg.Pool) {
    this.db = new Kysely<InventoryTables>({ dialect: new PostgresDialect({ pool }) }).withSchema(liveSchema(inventoryProjection));
  }

  listDatacenters(filter: { after?: string; limit: number }): Promise<DatacenterRow[]> {
    let query = this.db.selectFrom("datacenters").selectAll();
    if (filter.after !== undefined) query = query.where("name", ">", filter.after);
    return query.orderBy("name").limit(filter.limit).execute();
  }

  getDatacenter(name: string): Promise<DatacenterRow | undefined> {
    return this.db.selectFrom("datacenters").selectAll().where("name", "=", name).executeTakeFirst();
  }

  async datacenterContents(name: string): Promise<{ racks: Array<RackRow & { hosts: number }>; switches: SwitchRow[]; links: LinkRow[] }> {
    const [racks, counts, switches, links] = await Promise.all([
      this.db.selectFrom("racks").selectAll().where("datacenter", "=", name).orderBy("name").execute(),
      this.db.selectFrom("hosts").select(["rack", (eb) => eb.fn.countAll<string>().as("n")]).where("datacenter", "=", name).groupBy("rack").execute(),
      this.db.selectFrom("switches").selectAll().where("datacenter", "=", name).orderBy("name").execute(),
      this.db.selectFrom("links").selectAll().where("datacenter", "=", name).orderBy(["a_device", "a_port"]).execute(),
    ]);
    const byRack = new Map(counts.map((c) => [c.rack, Number(c.n)]));
    return { racks: racks.map((r) => ({ ...r, hosts: byRack.get(r.name) ?? 0 })), switches, links };
  }

  getHost(hostId: string): Promise<HostRow | undefined> {
    return this.db.selectFrom("hosts").selectAll().where("host_id", "=", hostId).executeTakeFirst();
  }

  /** Streams' versions of the datacenters named (the ETag of a host is its datacenter's stream version). */
  async streamVersion(datacenter: string): Promise<number | undefined> {
    return (await this.db.selectFrom("datacenters").select("stream_version").where("name", "=", datacenter).executeTakeFirst())?.stream_version;
  }

  listHosts(filter: HostListFilter): Promise<HostRow[]> {
    let query = this.db.selectFrom("hosts").selectAll();
    if (filter.datacenter !== undefined) query = query.where("datacenter", "=", filter.datacenter);
    if (filter.rack !== undefined) query = query.where("rack", "=", filter.rack);
    if (filter.name !== undefined) query = query.where("name", "=", filter.name);
    if (filter.pendingApproval !== undefined) {
      query = query.where("pending_identity", filter.pendingApproval ? "!=" : "=", "null" as never);
    }
    if (filter.after !== undefined) query = query.where("host_id", ">", filter.after);
    return query.orderBy("host_id").limit(filter.limit).execute();
  }
}
