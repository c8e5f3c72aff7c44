import { type ColumnType, type Kysely, type Selectable } from "kysely";
import type { RecordedEvent } from "../../adapters/eventstore/port.ts";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import { HostRegisteredSchema } from "../../domain/inventory/events.ts";
import {
  HOST_EVENT_TYPES,
  hostDecider,
  hostEventSchemas,
  initialHostState,
  wipeInProgress,
  MASKIN_HOST_STREAM_PREFIX,
  type HostEvent,
  type HostEventType,
  type HostState,
  type WipeStage,
} from "../../domain/maskin/index.ts";
import { defineProjection } from "../projection.ts";

/**
 * Maskin hosts read model (schema `maskin`, table `hosts`): one row per host,
 * keyed by the inventory's host id. A row appears with the host's inventory
 * registration (`HostRegistered`: datacenter and name, state `available`) or
 * with its first maskin event, whichever comes first, and then follows the
 * host stream `maskin-host-<hostId>`, folded with the host aggregate's own
 * evolve (kept in `aggregate`), so the model never disagrees with the
 * aggregate about what an event means.
 *
 * Columns:
 * - `state` available|provisioning|ready|provision_failed|releasing|release_failed;
 *   `stage` the provisioning stage (allocated, netboot-requested, netboot-fetched,
 *   installed, install-failed; kept while ready/failed/releasing, null when available);
 * - `task_id` the task acting on the host now (provisioning task while
 *   provisioning/ready/provision_failed, the release task while releasing,
 *   the failed release task while release_failed),
 *   `provision_task_id` / `release_task_id`; tenant/project/environment/role
 *   of the current provisioning;
 * - `desired_power` (+ `desired_power_at`), `observed_power` (+
 *   `observed_at`: when the confirming read was taken), `drift` = both known
 *   and different, `drift_since` when it started (the event's time);
 * - `netboot_requested_at`, `netboot_fetched_at`, `install_reported_at`,
 *   `install_outcome`, `failure_reason`, `next_boot` (pxe|disk|null);
 * - the current or last wipe (README "Release and wipe"): `wipe_stage`
 *   (requested, netboot-fetched, wiped, wipe-failed), `wipe_task_id` (its
 *   release task), `wipe_requested_at`, `wipe_netboot_fetched_at`,
 *   `wipe_reported_at` (null for a wipe that ended with its failed task),
 *   `wipe_message`, `wipe_devices`, `wipe_bytes`;
 * - `release_failure_reason` / `release_failed_at`: why and when the last
 *   release failed (release_failed; null once another release starts);
 * - `version`: position of the last event in the host stream (the ETag;
 *   null until the host has one), `position`: log position of the last event
 *   applied to the row (read-your-writes).
 */

type Timestamp = ColumnType<Date, Date, Date>;
type Json<T> = ColumnType<T, string, string>;

export interface MaskinHostsTable {
  host_id: string;
  datacenter: string | null;
  name: string | null;
  state: HostState["state"];
  stage: string | null;
  task_id: string | null;
  provision_task_id: string | null;
  release_task_id: string | null;
  tenant_id: string | null;
  project_id: string | null;
  environment_id: string | null;
  role: string | null;
  desired_power: "on" | "off" | null;
  desired_power_at: Timestamp | null;
  observed_power: "on" | "off" | null;
  observed_at: Timestamp | null;
  drift: boolean;
  drift_since: Timestamp | null;
  netboot_requested_at: Timestamp | null;
  netboot_fetched_at: Timestamp | null;
  install_reported_at: Timestamp | null;
  install_outcome: "succeeded" | "failed" | null;
  failure_reason: string | null;
  next_boot: "pxe" | "disk" | null;
  wipe_stage: WipeStage | null;
  wipe_task_id: string | null;
  wipe_requested_at: Timestamp | null;
  wipe_netboot_fetched_at: Timestamp | null;
  wipe_reported_at: Timestamp | null;
  wipe_message: string | null;
  wipe_devices: Json<string[] | null>;
  /** bigint: pg returns it as a string. */
  wipe_bytes: ColumnType<string | null, number | null, number | null>;
  release_failure_reason: string | null;
  release_failed_at: Timestamp | null;
  aggregate: Json<HostState>;
  created_at: Timestamp;
  updated_at: Timestamp;
  version: number | null;
  position: string;
}

export interface MaskinTables {
  hosts: MaskinHostsTable;
}

export type MaskinHostRow = Selectable<MaskinHostsTable>;

export const MASKIN_SCHEMA = "maskin";

const HOST_TYPES = new Set<string>(HOST_EVENT_TYPES);

export const maskinHostsProjection = defineProjection<MaskinTables>({
  name: MASKIN_SCHEMA,
  version: 2,
  tables: ["hosts"],
  eventTypes: [...HOST_EVENT_TYPES, "HostRegistered"],

  async createTables(db: Kysely<any>, schema: string) {
    const s = db.schema.withSchema(schema);
    await s
      .createTable("hosts")
      .addColumn("host_id", "text", (c) => c.primaryKey())
      .addColumn("datacenter", "text")
      .addColumn("name", "text")
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("stage", "text")
      .addColumn("task_id", "text")
      .addColumn("provision_task_id", "text")
      .addColumn("release_task_id", "text")
      .addColumn("tenant_id", "text")
      .addColumn("project_id", "text")
      .addColumn("environment_id", "text")
      .addColumn("role", "text")
      .addColumn("desired_power", "text")
      .addColumn("desired_power_at", "timestamptz")
      .addColumn("observed_power", "text")
      .addColumn("observed_at", "timestamptz")
      .addColumn("drift", "boolean", (c) => c.notNull())
      .addColumn("drift_since", "timestamptz")
      .addColumn("netboot_requested_at", "timestamptz")
      .addColumn("netboot_fetched_at", "timestamptz")
      .addColumn("install_reported_at", "timestamptz")
      .addColumn("install_outcome", "text")
      .addColumn("failure_reason", "text")
      .addColumn("next_boot", "text")
      .addColumn("wipe_stage", "text")
      .addColumn("wipe_task_id", "text")
      .addColumn("wipe_requested_at", "timestamptz")
      .addColumn("wipe_netboot_fetched_at", "timestamptz")
      .addColumn("wipe_reported_at", "timestamptz")
      .addColumn("wipe_message", "text")
      .addColumn("wipe_devices", "jsonb")
      .addColumn("wipe_bytes", "bigint")
      .addColumn("release_failure_reason", "text")
      .addColumn("release_failed_at", "timestamptz")
      .addColumn("aggregate", "jsonb", (c) => c.notNull())
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer")
      .addColumn("position", "text", (c) => c.notNull())
      .execute();
    await s.createIndex("hosts_datacenter").on("hosts").columns(["datacenter", "host_id"]).execute();
    await s.createIndex("hosts_state").on("hosts").columns(["state", "host_id"]).execute();
    await s.createIndex("hosts_tenant").on("hosts").columns(["tenant_id", "project_id", "host_id"]).execute();
  },

  async handle(db, event) {
    await applyEvent(db, event);
  },
});

/** Extra facts a row keeps that the aggregate does not. */
interface Extras {
  netbootRequestedAt: string | null;
  installOutcome: "succeeded" | "failed" | null;
  driftSince: Date | null;
}

async function applyEvent(db: Kysely<MaskinTables>, r: RecordedEvent): Promise<void> {
  const position = formatPosition(r);
  if (r.type === "HostRegistered") {
    const d = HostRegisteredSchema.parse(r.data);
    const existing = await db.selectFrom("hosts").select("host_id").where("host_id", "=", d.hostId).executeTakeFirst();
    if (existing) {
      await db.updateTable("hosts").set({ datacenter: d.datacenter, name: d.name, updated_at: r.occurredAt, position }).where("host_id", "=", d.hostId).execute();
    } else {
      await db
        .insertInto("hosts")
        .values({ ...rowOf(initialHostState, emptyExtras, r), host_id: d.hostId, datacenter: d.datacenter, name: d.name, version: null })
        .execute();
    }
    return;
  }
  if (!HOST_TYPES.has(r.type) || !r.streamId.startsWith(MASKIN_HOST_STREAM_PREFIX)) return;
  const event = parseHostEvent(r);
  const hostId = event.data.hostId;
  const row = await db.selectFrom("hosts").selectAll().where("host_id", "=", hostId).executeTakeFirst();
  const before: HostState = row ? row.aggregate : initialHostState;
  const after = hostDecider.evolve(before, event);
  const extras: Extras = {
    netbootRequestedAt: row?.netboot_requested_at?.toISOString() ?? null,
    installOutcome: row?.install_outcome ?? null,
    driftSince: row?.drift_since ?? null,
  };
  if (event.type === "HostNetbootRequested") extras.netbootRequestedAt = event.data.at;
  if (event.type === "HostProvisioningStarted") {
    extras.netbootRequestedAt = null;
    extras.installOutcome = null;
  }
  if (event.type === "HostInstallReported") extras.installOutcome = event.data.outcome;
  const drifting = driftOf(after);
  extras.driftSince = drifting ? (driftOf(before) && row?.drift_since ? row.drift_since : r.occurredAt) : null;
  const values = { ...rowOf(after, extras, r), host_id: hostId };
  if (row) {
    const { host_id: _id, created_at: _c, ...changes } = values;
    await db.updateTable("hosts").set({ ...changes, datacenter: after.datacenter ?? row.datacenter, name: row.name }).where("host_id", "=", hostId).execute();
  } else {
    await db.insertInto("hosts").values(values).execute();
  }
}

const emptyExtras: Extras = { netbootRequestedAt: null, installOutcome: null, driftSince: null };

function driftOf(state: HostState): boolean {
  return state.desiredPower !== null && state.observedPower !== null && state.desiredPower.state !== state.observedPower.state;
}

function date(iso: string | null | undefined): Date | null {
  return iso ? new Date(iso) : null;
}

function rowOf(s: HostState, extras: Extras, r: RecordedEvent) {
  const p = s.provisioning;
  // An available host being wiped (a release of a host nobody held) is that release task's until the wipe ends.
  const taskId =
    s.state === "releasing" || s.state === "release_failed" ? s.releaseTaskId : s.state === "available" ? (wipeInProgress(s)?.taskId ?? null) : (p?.taskId ?? null);
  const wipe = s.wipe ?? null; // (aggregates stored before wipes existed have no field)
  const releaseFailure = s.releaseFailure ?? null;
  return {
    host_id: s.hostId ?? "",
    datacenter: s.datacenter,
    name: null as string | null,
    state: s.state,
    stage: p?.stage ?? null,
    task_id: taskId,
    provision_task_id: p?.taskId ?? null,
    release_task_id: s.releaseTaskId,
    tenant_id: p?.tenantId ?? null,
    project_id: p?.projectId ?? null,
    environment_id: p?.environmentId ?? null,
    role: p?.role ?? null,
    desired_power: s.desiredPower?.state ?? null,
    desired_power_at: date(s.desiredPower?.at),
    observed_power: s.observedPower?.state ?? null,
    observed_at: date(s.observedPower?.observedAt),
    drift: driftOf(s),
    drift_since: extras.driftSince,
    netboot_requested_at: p ? date(extras.netbootRequestedAt) : null,
    netboot_fetched_at: date(p?.netbootFetchedAt),
    install_reported_at: date(p?.installReportedAt),
    install_outcome: p ? extras.installOutcome : null,
    failure_reason: p?.failureReason ?? null,
    next_boot: s.nextBoot,
    wipe_stage: wipe?.stage ?? null,
    wipe_task_id: wipe?.taskId ?? null,
    wipe_requested_at: date(wipe?.requestedAt),
    wipe_netboot_fetched_at: date(wipe?.netbootFetchedAt),
    wipe_reported_at: date(wipe?.reportedAt),
    wipe_message: wipe?.message ?? null,
    wipe_devices: JSON.stringify(wipe ? wipe.devices : null),
    wipe_bytes: wipe?.bytesWiped ?? null,
    release_failure_reason: releaseFailure?.reason ?? null,
    release_failed_at: date(releaseFailure?.at),
    aggregate: JSON.stringify(s),
    created_at: r.occurredAt,
    updated_at: r.occurredAt,
    version: r.streamId.startsWith(MASKIN_HOST_STREAM_PREFIX) ? r.streamPosition : null,
    position: formatPosition(r),
  };
}

function parseHostEvent(r: RecordedEvent): HostEvent {
  const schema = hostEventSchemas[r.type as HostEventType].schema;
  return { type: r.type, data: schema.parse(r.data) } as HostEvent;
}
