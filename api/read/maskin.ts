import { Kysely, PostgresDialect } from "kysely";
import type pg from "pg";
import { liveSchema, maskinHostsProjection } from "../../projections/index.ts";
import type { MaskinHostRow, MaskinTables } from "../../projections/maskin/hosts.ts";

/**
 * The API's way into the maskin hosts read model (schema `maskin`): each
 * host's lifecycle state, provisioning stage, desired and observed power and
 * drift. Like the inventory it is the platform's: callers check
 * canReadInventory first (api/read/inventory.ts).
 */
export class MaskinReadModel {
  private readonly db: Kysely<MaskinTables>;

  constructor(pool: pg.Pool) {
    this.db = new Kysely<MaskinTables>({ dialect: new PostgresDialect({ pool }) }).withSchema(liveSchema(maskinHostsProjection));
  }

  /** The host's row; undefined when the read model has not seen it (yet), or does not run. */
  async getHost(hostId: string): Promise<MaskinHostRow | undefined> {
    try {
      return await this.db.selectFrom("hosts").selectAll().where("host_id", "=", hostId).executeTakeFirst();
    } catch (error) {
      if ((error as { code?: string }).code === "42P01") return undefined; // the projection's tables do not exist here
      throw error;
    }
  }

  /** Rows of these hosts, by id (missing ones are absent). */
  async getHosts(hostIds: readonly string[]): Promise<Map<string, MaskinHostRow>> {
    if (hostIds.length === 0) return new Map();
    try {
      const rows = await this.db.selectFrom("hosts").selectAll().where("host_id", "in", [...hostIds]).execute();
      return new Map(rows.map((row) => [row.host_id, row]));
    } catch (error) {
      if ((error as { code?: string }).code === "42P01") return new Map();
      throw error;
    }
  }
}

/** What the API shows of a host's power and lifecycle (REST and GraphQL). */
export interface HostStatusView {
  readonly hostId: string;
  readonly state: string;
  readonly stage: string | null;
  readonly taskId: string | null;
  readonly tenantId: string | null;
  readonly projectId: string | null;
  readonly environmentId: string | null;
  readonly role: string | null;
  readonly power: {
    readonly desired: "on" | "off" | null;
    readonly observed: "on" | "off" | null;
    readonly observedAt: string | null;
    readonly drift: boolean;
    readonly driftSince: string | null;
  };
  readonly nextBoot: "pxe" | "disk" | null;
  readonly netbootFetchedAt: string | null;
  readonly installReportedAt: string | null;
  readonly failureReason: string | null;
  /** The current or last wipe of the host's disks (README "Release and wipe"); null before any. */
  readonly wipe: {
    readonly stage: string;
    readonly taskId: string | null;
    readonly requestedAt: string | null;
    readonly netbootFetchedAt: string | null;
    readonly reportedAt: string | null;
    readonly message: string | null;
    readonly devices: string[];
    readonly bytesWiped: number | null;
  } | null;
  /** Why and when the last release failed (state release_failed); null once another release starts. */
  readonly releaseFailure: { readonly taskId: string | null; readonly reason: string; readonly at: string | null } | null;
}

const iso = (value: Date | string | null) => (value === null ? null : (value instanceof Date ? value : new Date(value)).toISOString());

/** A host the read model has not seen is available with nothing known about its power. */
export function hostStatusView(hostId: string, row: MaskinHostRow | undefined): HostStatusView {
  return {
    hostId,
    state: row?.state ?? "available",
    stage: row?.stage ?? null,
    taskId: row?.task_id ?? null,
    tenantId: row?.tenant_id ?? null,
    projectId: row?.project_id ?? null,
    environmentId: row?.environment_id ?? null,
    role: row?.role ?? null,
    power: {
      desired: row?.desired_power ?? null,
      observed: row?.observed_power ?? null,
      observedAt: iso(row?.observed_at ?? null),
      drift: row?.drift ?? false,
      driftSince: iso(row?.drift_since ?? null),
    },
    nextBoot: row?.next_boot ?? null,
    netbootFetchedAt: iso(row?.netboot_fetched_at ?? null),
    installReportedAt: iso(row?.install_reported_at ?? null),
    failureReason: row?.failure_reason ?? null,
    wipe: row?.wipe_stage
      ? {
          stage: row.wipe_stage,
          taskId: row.wipe_task_id,
          requestedAt: iso(row.wipe_requested_at),
          netbootFetchedAt: iso(row.wipe_netboot_fetched_at),
          reportedAt: iso(row.wipe_reported_at),
          message: row.wipe_message,
          devices: [...(row.wipe_devices ?? [])],
          bytesWiped: row.wipe_bytes === null ? null : Number(row.wipe_bytes),
        }
      : null,
    releaseFailure: row?.release_failure_reason ? { taskId: row.release_task_id, reason: row.release_failure_reason, at: iso(row.release_failed_at) } : null,
  };
}
