import { randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import { executeCapacityCommand, executeVmCommand } from "../../../commands/maskin/vm/index.ts";
import type { CommandStore } from "../../../commands/pipeline.ts";
import { orphanProcesses, type VmLifecycle } from "../../../domain/maskin/vm/index.ts";
import { liveSchema } from "../../../projections/projection.ts";
import { maskinVmsProjection, type MaskinVmTables } from "../../../projections/maskin/vms.ts";
import type { VmRunState, VmRuntime } from "../../qemu/port.ts";

/**
 * The VM runtime observer of one hypervisor host, run by its hypervisor
 * worker (like the maskin worker's power observer). Every `intervalMs`:
 *
 * 1. it reads the VMs placed on this host from the `maskin_vms.vms` read
 *    model (`host_id` = this host): the event store has no index by host,
 *    and a round that lags the log by a moment only delays an observation;
 * 2. for each VM whose lifecycle is settled (`running`, `stopped`,
 *    `deleted`: the states `vmDrift` judges; a VM in transition belongs to
 *    the saga acting on it, whose own steps read the runtime) it reads
 *    `runtime.status` and records `RecordRuntimeObservation` (running,
 *    paused, shutdown or absent) when that differs from the VM's last
 *    observation: the vms projection then shows the drift;
 * 3. the QEMU processes with no VM record here (unknown, deleted, or placed
 *    on another host: `orphanProcesses`) are recorded on the hypervisor's
 *    capacity stream as `RecordHypervisorOrphans` when the set changes.
 *
 * It never acts on a VM: reads only. It writes Postgres itself through the
 * command handlers, as the power observer does (DATABASE_URL).
 */

export const DEFAULT_VM_OBSERVE_INTERVAL_MS = 5_000;

/** The lifecycles whose runtime state the observer records (see the file comment). */
export const OBSERVED_LIFECYCLES: readonly VmLifecycle[] = ["running", "stopped", "deleted"];

export type VmObservedState = "running" | "paused" | "shutdown" | "absent";

/** A runtime state as the VM aggregate records it; null: nothing to record (QEMU is between states). */
export function observedOf(state: VmRunState): VmObservedState | null {
  switch (state) {
    case "running":
      return "running";
    case "absent":
      return "absent";
    case "shutdown":
    case "guest-panicked":
      return "shutdown";
    case "unresponsive":
    case "prelaunch":
    case "inmigrate":
    case "finish-migrate":
    case "restore-vm":
    case "save-vm":
      return null;
    default:
      // paused, suspended, io-error, internal-error, watchdog, debug, ...: the CPUs do not run.
      return "paused";
  }
}

export interface VmObserverOptions {
  readonly hostId: string;
  readonly datacenter: string;
  readonly runtime: Pick<VmRuntime, "status" | "list">;
  readonly store: CommandStore;
  /** The database holding the maskin_vms read model. */
  readonly db: Kysely<any>;
  readonly intervalMs?: number;
  readonly now?: () => Date;
  readonly onError?: (error: unknown, context: string) => void;
}

export interface VmObservationRound {
  readonly at: string;
  readonly vms: number;
  readonly recorded: ReadonlyArray<{ readonly vmId: string; readonly observed: VmObservedState }>;
  readonly orphans: readonly string[];
  readonly orphansRecorded: boolean;
}

export class VmObserver {
  readonly #intervalMs: number;
  readonly #now: () => Date;
  readonly #db: Kysely<MaskinVmTables>;
  #orphans: readonly string[] | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<unknown> | null = null;
  #stopped = true;

  constructor(private readonly options: VmObserverOptions) {
    this.#intervalMs = options.intervalMs ?? DEFAULT_VM_OBSERVE_INTERVAL_MS;
    this.#now = options.now ?? (() => new Date());
    this.#db = (options.db as Kysely<MaskinVmTables>).withSchema(liveSchema(maskinVmsProjection));
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running?.catch(() => {});
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.round()
        .catch((error: unknown) => this.options.onError?.(error, "VM observer round"))
        .finally(() => {
          this.#running = null;
          this.#schedule(this.#intervalMs);
        });
    }, delayMs);
    this.#timer.unref?.();
  }

  /** One round (see the file comment). */
  async round(): Promise<VmObservationRound> {
    const { hostId } = this.options;
    const context = () => ({ actor: { kind: "system" as const, id: `hypervisor-observer-${hostId}` }, correlationId: randomUUID() });
    const rows = await this.#db.selectFrom("vms").select(["vm_id", "lifecycle", "observed"]).where("host_id", "=", hostId).execute();
    const processes = new Set((await this.options.runtime.list()).map((p) => p.vmId));
    const recorded: Array<{ vmId: string; observed: VmObservedState }> = [];
    for (const row of rows) {
      if (!OBSERVED_LIFECYCLES.includes(row.lifecycle)) continue;
      try {
        // Deleted VMs pile up: those with no process are absent without asking QMP.
        const state = row.lifecycle === "deleted" && !processes.has(row.vm_id) ? "absent" : (await this.options.runtime.status(row.vm_id)).state;
        const observed = observedOf(state);
        if (observed === null || observed === row.observed) continue;
        await executeVmCommand(this.options.store, { type: "RecordRuntimeObservation", vmId: row.vm_id, observed, at: this.#now().toISOString() }, context());
        recorded.push({ vmId: row.vm_id, observed });
      } catch (error) {
        this.options.onError?.(error, `observing VM ${row.vm_id}`);
      }
    }

    const known = new Map(rows.map((row) => [row.vm_id, row.lifecycle] as const));
    const orphans = orphanProcesses(processes, known);
    if (this.#orphans === null) {
      const hv = await this.#db.selectFrom("hypervisors").select(["orphans"]).where("host_id", "=", hostId).executeTakeFirst();
      this.#orphans = hv?.orphans ?? [];
    }
    let orphansRecorded = false;
    if (orphans.length !== this.#orphans.length || orphans.some((id, i) => id !== this.#orphans?.[i])) {
      try {
        const result = await executeCapacityCommand(
          this.options.store,
          { type: "RecordHypervisorOrphans", hostId, vmIds: orphans, at: this.#now().toISOString() },
          { ...context(), datacenter: this.options.datacenter },
        );
        orphansRecorded = result.events.length > 0;
        this.#orphans = orphans;
      } catch (error) {
        this.options.onError?.(error, `recording orphan QEMU processes on host ${hostId}`);
      }
    }
    return { at: this.#now().toISOString(), vms: rows.length, recorded, orphans, orphansRecorded };
  }
}
