import { Kysely, PostgresDialect, sql } from "kysely";
import type pg from "pg";
import { liveSchema, maskinVmsProjection } from "../../projections/index.ts";
import type { MaskinVmRow, MaskinVmTables } from "../../projections/maskin/vms.ts";
import type { VmDirectory } from "../../sagas/maskin/vm/common.ts";
import type { TaskVisibility } from "./tasks.ts";

/**
 * The VM read model (schema `maskin_vms`) for the API and the VM sagas:
 * - get/list of VM rows, lists filtered by the caller's visibility in SQL
 *   (a VM always has a project: a project-limited caller sees those projects);
 * - `usageOf(projectId)`: what the project's VMs not deleted take (the domain's quota usage), for the
 *   quota check on create;
 * - the VmDirectory the sagas need: the hypervisors of a datacenter and the
 *   VM whose placement has waited longest there.
 */

export interface VmListFilter {
  readonly tenantId?: string;
  readonly projectId?: string;
  readonly environmentId?: string;
  /** Exclusive keyset cursor: the last VM id of the previous page. */
  readonly after?: string;
  readonly limit: number;
}

function missingTables(error: unknown): boolean {
  return (error as { code?: string }).code === "42P01";
}

export class VmReadModel implements VmDirectory {
  private readonly db: Kysely<MaskinVmTables>;

  constructor(pool: pg.Pool) {
    this.db = new Kysely<MaskinVmTables>({ dialect: new PostgresDialect({ pool }) }).withSchema(liveSchema(maskinVmsProjection));
  }

  async getVm(vmId: string): Promise<MaskinVmRow | undefined> {
    try {
      return await this.db.selectFrom("vms").selectAll().where("vm_id", "=", vmId).executeTakeFirst();
    } catch (error) {
      if (missingTables(error)) return undefined;
      throw error;
    }
  }

  /** VMs ordered by id (deleted ones left out), filtered by the caller's visibility in SQL. */
  async listVms(visible: TaskVisibility, filter: VmListFilter): Promise<MaskinVmRow[]> {
    if (visible !== "all" && visible.length === 0) return [];
    let query = this.db.selectFrom("vms").selectAll().where("lifecycle", "!=", "deleted");
    if (visible !== "all") {
      query = query.where((eb) =>
        eb.or(
          visible.map(({ tenantId, projects }) =>
            projects === "all"
              ? eb("tenant_id", "=", tenantId)
              : projects.length === 0
                ? eb.val(false)
                : eb.and([eb("tenant_id", "=", tenantId), eb("project_id", "in", [...projects])]),
          ),
        ),
      );
    }
    if (filter.tenantId !== undefined) query = query.where("tenant_id", "=", filter.tenantId);
    if (filter.projectId !== undefined) query = query.where("project_id", "=", filter.projectId);
    if (filter.environmentId !== undefined) query = query.where("environment_id", "=", filter.environmentId);
    if (filter.after !== undefined) query = query.where("vm_id", ">", filter.after);
    try {
      return await query.orderBy("vm_id").limit(filter.limit).execute();
    } catch (error) {
      if (missingTables(error)) return [];
      throw error;
    }
  }

  /** What the project's VMs hold now (every VM not deleted, as the domain's quota counts). */
  async usageOf(projectId: string): Promise<{ vms: number; vcpus: number; memoryMiB: number }> {
    try {
      const rows = await this.db.selectFrom("vms").select(["resources"]).where("project_id", "=", projectId).where("lifecycle", "!=", "deleted").execute();
      return rows.reduce((sum, row) => ({ vms: sum.vms + 1, vcpus: sum.vcpus + row.resources.vcpus, memoryMiB: sum.memoryMiB + row.resources.memoryMiB }), { vms: 0, vcpus: 0, memoryMiB: 0 });
    } catch (error) {
      if (missingTables(error)) return { vms: 0, vcpus: 0, memoryMiB: 0 };
      throw error;
    }
  }

  async hypervisorsIn(datacenter: string): Promise<readonly string[]> {
    try {
      const rows = await this.db.selectFrom("hypervisors").select(["host_id"]).where("datacenter", "=", datacenter).orderBy("name").orderBy("host_id").execute();
      return rows.map((row) => row.host_id);
    } catch (error) {
      if (missingTables(error)) return [];
      throw error;
    }
  }

  async oldestBlockedPlacement(datacenter: string): Promise<string | null> {
    try {
      const row = await this.db
        .selectFrom("vms")
        .select(["task_id"])
        .where("datacenter", "=", datacenter)
        .where("lifecycle", "=", "placing")
        .where(sql<boolean>`placement->>'outcome' = 'blocked'`)
        .orderBy("created_at")
        .orderBy("vm_id")
        .limit(1)
        .executeTakeFirst();
      return row?.task_id ?? null;
    } catch (error) {
      if (missingTables(error)) return null;
      throw error;
    }
  }
}
