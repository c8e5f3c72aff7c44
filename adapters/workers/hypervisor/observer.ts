import { randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import { executeCapacityCommand, executeVmCommand } from "../../../commands/maskin/vm/index.ts";
import type { CommandStore } from "../../../commands/pipeline.ts";
import { orphanProcesses, type VmLifecycle } from "../../../domain/maskin/vm/index.ts";
import { liveSchema } from "../../../projections/projection.ts";
import { maskinVmsProjection, type MaskinVmTables } from "../../../projections/maskin/vms.ts";
import type { VmRunState, VmRuntime } from "../../qemu/port.ts";
import { PeriodicRounds } from "../periodic.ts";

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
 *    capacity stream as `RecordHypervisorOrphans` when the set changes;
 * 4. with a disk store, the disk image generations in it that the read model
 *    says are gone (the disk image was deleted, or was deleted and created
 *    again: a newer generation) are removed: the delete saga's `disk-remove`
 *    reaches only the host of the last VM that used the disk, and copies made
 *    for earlier VMs on other hosts would stay forever. A disk image the read
 *    model does not know (yet) is kept: lag must never delete a disk.
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
  /** This host's disk image store (step 4); absent: no disk collection. */
  readonly disks?: { listDisks(): Promise<Array<{ name: string; generation: number }>>; removeDisk(name: string, generation: number): Promise<{ removed: boolean }> };
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
  /** Disk image generations removed from this host's store (`<name>-g<generation>`). */
  readonly disksRemoved: readonly string[];
}

export class VmObserver {
  readonly #now: () => Date;
  readonly #db: Kysely<MaskinVmTables>;
  readonly #loop: PeriodicRounds;
  #orphans: readonly string[] | null = null;

  constructor(private readonly options: VmObserverOptions) {
    this.#now = options.now ?? (() => new Date());
    this.#loop = new PeriodicRounds(() => this.round(), options.intervalMs ?? DEFAULT_VM_OBSERVE_INTERVAL_MS, (error) => options.onError?.(error, "VM observer round"));
    this.#db = (options.db as Kysely<MaskinVmTables>).withSchema(liveSchema(maskinVmsProjection));
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
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
    const disksRemoved = await this.#collectDisks();
    return { at: this.#now().toISOString(), vms: rows.length, recorded, orphans, orphansRecorded, disksRemoved };
  }

  /** Step 4 of a round (see the file comment). */
  async #collectDisks(): Promise<string[]> {
    const disks = this.options.disks;
    if (!disks) return [];
    const removed: string[] = [];
    try {
      const held = await disks.listDisks();
      if (held.length === 0) return removed;
      const rows = await this.#db.selectFrom("disk_images").select(["name", "status", "generation"]).where("datacenter", "=", this.options.datacenter).execute();
      const known = new Map(rows.map((row) => [row.name, row] as const));
      for (const disk of held) {
        const row = known.get(disk.name);
        const gone = row !== undefined && (row.generation > disk.generation || (row.generation === disk.generation && row.status === "deleted"));
        if (!gone) continue;
        if ((await disks.removeDisk(disk.name, disk.generation)).removed) removed.push(`${disk.name}-g${disk.generation}`);
      }
    } catch (error) {
      this.options.onError?.(error, `collecting deleted disk images on host ${this.options.hostId}`);
    }
    return removed;
  }
}
