import { randomUUID } from "node:crypto";
import { executeHostCommand, loadHost } from "../../../commands/maskin/index.ts";
import type { CommandStore } from "../../../commands/pipeline.ts";
import { initialPowerSync, observePower, type HostPowerStateObserved, type PowerRead, type PowerSyncState } from "../../../domain/maskin/power-sync.ts";
import type { BmcAccess } from "./bmc.ts";
import { PeriodicRounds } from "../periodic.ts";

/**
 * The power observer of one datacenter (domain/maskin/README.md, power-state
 * sync), run by the maskin worker service. Every `intervalMs` it reads the
 * power status of each host of the datacenter that has a BMC, through the
 * same per-BMC lock as task actions (adapters/bmc/serial.ts), and feeds each
 * read to `observePower`, keeping the returned state per host. A change is
 * recorded only when two consecutive reads agree: as `RecordPowerObservation`
 * on the host stream `maskin-host-<hostId>`.
 *
 * Unlike task actions (which answer over NATS and let the saga write), the
 * observer writes to Postgres itself: it runs where the worker can reach the
 * control plane's database (DATABASE_URL), which the maskin worker needs
 * anyway for the inventory and the secret store.
 *
 * It never acts on power: reads only. A failed read is counted, never a change.
 * Per host, the state starts from the host's last recorded observation, so a
 * restarted observer does not record the same state again.
 */

export interface PowerObserverOptions {
  readonly access: BmcAccess;
  readonly store: CommandStore;
  /** Between the end of one round and the start of the next (default 30 000 ms). */
  readonly intervalMs?: number;
  readonly now?: () => Date;
  readonly onError?: (error: unknown, context: string) => void;
  /** Each accepted change, after it was recorded (tests, logs). */
  readonly onObserved?: (observed: HostPowerStateObserved) => void;
}

export interface ObservationRound {
  readonly at: string;
  readonly hosts: number;
  readonly reads: ReadonlyArray<{ readonly hostId: string; readonly read: PowerRead }>;
  readonly recorded: readonly HostPowerStateObserved[];
}

export const DEFAULT_OBSERVE_INTERVAL_MS = 30_000;

export class PowerObserver {
  readonly #states = new Map<string, PowerSyncState>();
  readonly #now: () => Date;
  readonly #loop: PeriodicRounds;

  constructor(private readonly options: PowerObserverOptions) {
    this.#now = options.now ?? (() => new Date());
    this.#loop = new PeriodicRounds(() => this.round(), options.intervalMs ?? DEFAULT_OBSERVE_INTERVAL_MS, (error) => options.onError?.(error, "power observer round"));
  }

  /** What the observer holds for a host now (null before its first read). */
  stateOf(hostId: string): PowerSyncState | null {
    return this.#states.get(hostId) ?? null;
  }

  /** Starts the periodic loop (first round at once). */
  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** One round: read every host with a BMC once (in parallel; one BMC at a time each), record accepted changes. */
  async round(): Promise<ObservationRound> {
    const at = this.#now().toISOString();
    const hosts = await this.options.access.hostsWithBmc();
    const results = await Promise.all(hosts.map((host) => this.#observe(host.hostId, host)));
    return {
      at,
      hosts: hosts.length,
      reads: results.map((r) => ({ hostId: r.hostId, read: r.read })),
      recorded: results.flatMap((r) => (r.recorded ? [r.recorded] : [])),
    };
  }

  async #observe(hostId: string, host: Parameters<BmcAccess["open"]>[0]) {
    let state = this.#states.get(hostId);
    const loaded = await loadHost(this.options.store, hostId);
    if (!state) state = initialPowerSync(hostId, loaded.state.observedPower);
    const read = await this.#read(host);
    const step = observePower(state, read, loaded.state.desiredPower?.state ?? null);
    let recorded: HostPowerStateObserved | null = null;
    if (step.observed) {
      try {
        await executeHostCommand(
          this.options.store,
          { type: "RecordPowerObservation", ...step.observed },
          { actor: { kind: "system", id: `maskin-power-observer-${this.options.access.datacenter}` }, correlationId: randomUUID() },
        );
        recorded = step.observed;
        this.options.onObserved?.(step.observed);
      } catch (error) {
        // Not recorded: keep the old state so the next reads confirm the change again.
        this.options.onError?.(error, `recording the power state of host ${hostId}`);
        return { hostId, read, recorded: null };
      }
    }
    this.#states.set(hostId, step.state);
    return { hostId, read, recorded };
  }

  async #read(host: Parameters<BmcAccess["open"]>[0]): Promise<PowerRead> {
    try {
      const { driver } = await this.options.access.open(host);
      const state = await driver.powerStatus();
      return { ok: true, state, at: this.#now().toISOString() };
    } catch (error) {
      const code = typeof (error as { code?: unknown }).code === "string" ? `${(error as { code: string }).code}: ` : "";
      return { ok: false, error: `${code}${error instanceof Error ? error.message : String(error)}`, at: this.#now().toISOString() };
    }
  }
}
