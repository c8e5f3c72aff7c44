import { type ColumnType, type Kysely, type Selectable } from "kysely";
import type { RecordedEvent } from "../../adapters/eventstore/port.ts";
import {
  DATACENTER_EVENT_TYPES,
  datacenterEventSchemas,
  isDatacenterEventType,
  type BmcSettings,
  type DatacenterEvent,
  type HostIdentity,
} from "../../domain/inventory/events.ts";
import { defineProjection } from "../projection.ts";

/**
 * Sentral inventory read model (schema `inventory`): datacenters, racks,
 * hosts, switches, links, as the datacenter streams say. Every row carries
 * `version`, the datacenter stream position of the last event that changed
 * it; `datacenters.stream_version` is the stream's last position (the ETag
 * of anything in the datacenter). Hosts keep their BMC settings (a secret
 * *reference*, never a password) and a pending identity change as jsonb.
 * The MAC registry's events are not projected (it is a consistency pool,
 * not something to show).
 */
type Timestamp = ColumnType<Date, Date, Date>;
type Json<T> = ColumnType<T, string, string>;

export interface DatacentersTable {
  name: string;
  display_name: string | null;
  region: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
  stream_version: number;
}

export interface RacksTable {
  datacenter: string;
  name: string;
  room: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
}

export interface HostsTable {
  host_id: string;
  datacenter: string;
  name: string;
  rack: string;
  position: number | null;
  serial: string;
  vendor: string | null;
  model: string | null;
  macs: Json<string[]>;
  role: string;
  bmc_address: string | null;
  bmc: Json<BmcSettings | null>;
  pending_identity: Json<{ changeId: string; identity: HostIdentity; proposedAt: string } | null>;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
}

export interface SwitchesTable {
  datacenter: string;
  name: string;
  rack: string | null;
  position: number | null;
  vendor: string | null;
  model: string | null;
  management_address: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number;
}

export interface LinksTable {
  datacenter: string;
  a_device: string;
  a_port: string;
  b_device: string;
  b_port: string;
  created_at: Timestamp;
  version: number;
}

export interface InventoryTables {
  datacenters: DatacentersTable;
  racks: RacksTable;
  hosts: HostsTable;
  switches: SwitchesTable;
  links: LinksTable;
}

export type DatacenterRow = Selectable<DatacentersTable>;
export type RackRow = Selectable<RacksTable>;
export type HostRow = Selectable<HostsTable>;
export type SwitchRow = Selectable<SwitchesTable>;
export type LinkRow = Selectable<LinksTable>;

export const INVENTORY_SCHEMA = "inventory";

export const inventoryProjection = defineProjection<InventoryTables>({
  name: INVENTORY_SCHEMA,
  version: 1,
  tables: ["datacenters", "racks", "hosts", "switches", "links"],
  eventTypes: DATACENTER_EVENT_TYPES,

  async createTables(db: Kysely<any>, schema: string) {
    const s = db.schema.withSchema(schema);
    const stamps = <T extends { addColumn: (...args: any[]) => T }>(t: T) =>
      t
        .addColumn("created_at", "timestamptz", (c: any) => c.notNull())
        .addColumn("updated_at", "timestamptz", (c: any) => c.notNull())
        .addColumn("version", "integer", (c: any) => c.notNull());
    await stamps(
      s.createTable("datacenters").addColumn("name", "text", (c) => c.primaryKey()).addColumn("display_name", "text").addColumn("region", "text"),
    )
      .addColumn("stream_version", "integer", (c) => c.notNull())
      .execute();
    await stamps(
      s.createTable("racks").addColumn("datacenter", "text", (c) => c.notNull()).addColumn("name", "text", (c) => c.notNull()).addColumn("room", "text"),
    )
      .addPrimaryKeyConstraint("racks_pkey", ["datacenter", "name"])
      .execute();
    await stamps(
      s
        .createTable("hosts")
        .addColumn("host_id", "text", (c) => c.primaryKey())
        .addColumn("datacenter", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("rack", "text", (c) => c.notNull())
        .addColumn("position", "integer")
        .addColumn("serial", "text", (c) => c.notNull())
        .addColumn("vendor", "text")
        .addColumn("model", "text")
        .addColumn("macs", "jsonb", (c) => c.notNull())
        .addColumn("role", "text", (c) => c.notNull())
        .addColumn("bmc_address", "text")
        .addColumn("bmc", "jsonb")
        .addColumn("pending_identity", "jsonb"),
    ).execute();
    await s.createIndex("hosts_datacenter_name").on("hosts").columns(["datacenter", "name"]).execute();
    await s.createIndex("hosts_name").on("hosts").columns(["name", "host_id"]).execute();
    await stamps(
      s
        .createTable("switches")
        .addColumn("datacenter", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("rack", "text")
        .addColumn("position", "integer")
        .addColumn("vendor", "text")
        .addColumn("model", "text")
        .addColumn("management_address", "text"),
    )
      .addPrimaryKeyConstraint("switches_pkey", ["datacenter", "name"])
      .execute();
    await s
      .createTable("links")
      .addColumn("datacenter", "text", (c) => c.notNull())
      .addColumn("a_device", "text", (c) => c.notNull())
      .addColumn("a_port", "text", (c) => c.notNull())
      .addColumn("b_device", "text", (c) => c.notNull())
      .addColumn("b_port", "text", (c) => c.notNull())
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addPrimaryKeyConstraint("links_pkey", ["datacenter", "a_device", "a_port", "b_device", "b_port"])
      .execute();
  },

  async handle(db, recorded) {
    const event = parseDatacenterEvent(recorded);
    if (!event) return;
    await applyEvent(db, event, recorded.occurredAt, recorded.streamPosition);
  },
});

export function parseDatacenterEvent(recorded: RecordedEvent): DatacenterEvent | undefined {
  if (!isDatacenterEventType(recorded.type)) return undefined;
  const data = datacenterEventSchemas[recorded.type].schema.parse(recorded.data);
  return { type: recorded.type, data } as DatacenterEvent;
}

const json = (value: unknown) => JSON.stringify(value);

async function one(result: Promise<{ numUpdatedRows: bigint }[]>, what: string): Promise<void> {
  const [row] = await result;
  if (!row || row.numUpdatedRows !== 1n) throw new Error(`inventory projection: expected to update exactly one ${what}`);
}

async function applyEvent(db: Kysely<InventoryTables>, event: DatacenterEvent, at: Date, version: number): Promise<void> {
  const dc = event.data.datacenter;
  if (event.type === "DatacenterRegistered") {
    await db
      .insertInto("datacenters")
      .values({ name: dc, display_name: event.data.displayName, region: event.data.region, created_at: at, updated_at: at, version, stream_version: version })
      .execute();
    return;
  }
  // Every other event moves the datacenter's stream version (the ETag of everything in it).
  await one(db.updateTable("datacenters").set({ stream_version: version }).where("name", "=", dc).execute(), `datacenter ${dc}`);
  switch (event.type) {
    case "DatacenterUpdated":
      await db.updateTable("datacenters").set({ display_name: event.data.displayName, region: event.data.region, updated_at: at, version }).where("name", "=", dc).execute();
      return;
    case "RackRegistered":
      await db.insertInto("racks").values({ datacenter: dc, name: event.data.rack, room: event.data.room, created_at: at, updated_at: at, version }).execute();
      return;
    case "RackUpdated":
      await one(db.updateTable("racks").set({ room: event.data.room, updated_at: at, version }).where("datacenter", "=", dc).where("name", "=", event.data.rack).execute(), "rack");
      return;
    case "HostRegistered": {
      const d = event.data;
      await db
        .insertInto("hosts")
        .values({
          host_id: d.hostId, datacenter: dc, name: d.name, rack: d.rack, position: d.position, serial: d.serial, vendor: d.vendor, model: d.model,
          macs: json(d.macs), role: d.role, bmc_address: d.bmcAddress, bmc: json(d.bmc), pending_identity: json(null),
          created_at: at, updated_at: at, version,
        })
        .execute();
      return;
    }
    case "HostUpdated": {
      const d = event.data;
      await one(
        db.updateTable("hosts")
          .set({ rack: d.rack, position: d.position, vendor: d.vendor, model: d.model, role: d.role, bmc: json(d.bmc), updated_at: at, version })
          .where("host_id", "=", d.hostId).execute(),
        "host",
      );
      return;
    }
    case "HostIdentityChangeProposed":
      await one(
        db.updateTable("hosts")
          .set({ pending_identity: json({ changeId: event.data.changeId, identity: event.data.proposed, proposedAt: at.toISOString() }), updated_at: at, version })
          .where("host_id", "=", event.data.hostId).execute(),
        "host",
      );
      return;
    case "HostIdentityChangeWithdrawn":
      await one(db.updateTable("hosts").set({ pending_identity: json(null), updated_at: at, version }).where("host_id", "=", event.data.hostId).execute(), "host");
      return;
    case "HostIdentityChangeApproved": {
      const { serial, macs, bmcAddress } = event.data.identity;
      await one(
        db.updateTable("hosts")
          .set({ serial, macs: json(macs), bmc_address: bmcAddress, pending_identity: json(null), updated_at: at, version })
          .where("host_id", "=", event.data.hostId).execute(),
        "host",
      );
      return;
    }
    case "SwitchRegistered":
    case "SwitchUpdated": {
      const d = event.data;
      const values = { rack: d.rack, position: d.position, vendor: d.vendor, model: d.model, management_address: d.managementAddress, updated_at: at, version };
      if (event.type === "SwitchRegistered") await db.insertInto("switches").values({ datacenter: dc, name: d.switch, created_at: at, ...values }).execute();
      else await one(db.updateTable("switches").set(values).where("datacenter", "=", dc).where("name", "=", d.switch).execute(), "switch");
      return;
    }
    case "LinkRegistered":
      await db
        .insertInto("links")
        .values({ datacenter: dc, a_device: event.data.a.device, a_port: event.data.a.port, b_device: event.data.b.device, b_port: event.data.b.port, created_at: at, version })
        .execute();
      return;
    default: {
      const never: never = event;
      throw new Error(`unhandled inventory event ${JSON.stringify(never)}`);
    }
  }
}

