import { PostgresEventStore } from "../../eventstore/postgres/store.ts";
import { createPool } from "../../postgres/connection.ts";
import { loadSecretKey } from "../../secrets/key.ts";
import { PostgresSecretStore } from "../../secrets/store.ts";
import { registerWorkerService, type WorkerServiceContext } from "../registry.ts";
import type { WorkHandler } from "../worker.ts";
import { BmcAccess } from "./bmc.ts";
import { createMaskinHandlers } from "./handlers.ts";
import { DEFAULT_OBSERVE_INTERVAL_MS, PowerObserver } from "./observer.ts";

/**
 * The `maskin` worker service: `dv worker --service maskin --datacenter osl1`
 * (and `dv up`, for its own datacenter) runs the actions `power` and `bootdev`
 * (handlers.ts; a wipe is the release saga netbooting the wipe image) and the datacenter's power observer (observer.ts).
 *
 * Environment:
 * - `DATABASE_URL`: the control plane's Postgres (the inventory, the secret
 *   store, the host streams the observer writes);
 * - `DV_SECRET_KEY` or `DV_SECRET_KEY_FILE`: the key BMC passwords are sealed with;
 * - `DV_MASKIN_OBSERVE_INTERVAL_MS`: power observer interval (default 30 000; 0 turns it off);
 * - `DV_MASKIN_ACK_WAIT_MS`: the maskin workers' ack wait (default 10 000, at
 *   least 1 000): a request a killed worker left unacked is redelivered this
 *   long after its last sign of life, so a restarted worker resumes soon. A
 *   long BMC operation is not redelivered meanwhile: the worker tells
 *   JetStream it is still working every third of it (worker.ts keep-alive);
 *   and a redelivery converges anyway (handlers.ts);
 * - `DV_BMC_TIMEOUT_MS`: per BMC exchange (default the driver's, 10 000).
 */

export const MASKIN_SERVICE = "maskin";
export const DEFAULT_MASKIN_ACK_WAIT_MS = 10_000;
const MIN_MASKIN_ACK_WAIT_MS = 1_000;

/** DV_MASKIN_ACK_WAIT_MS, or the default; throws for a value that is not a number of milliseconds >= 1 000. */
export function maskinAckWaitMs(env: NodeJS.ProcessEnv): number {
  const text = env.DV_MASKIN_ACK_WAIT_MS?.trim();
  if (!text) return DEFAULT_MASKIN_ACK_WAIT_MS;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < MIN_MASKIN_ACK_WAIT_MS) {
    throw new Error(`DV_MASKIN_ACK_WAIT_MS must be a whole number of milliseconds, at least ${MIN_MASKIN_ACK_WAIT_MS}, got ${text}`);
  }
  return ms;
}

interface Opened {
  readonly close: () => Promise<void>;
}

const opened: Opened[] = [];

export async function openMaskinService(context: WorkerServiceContext): Promise<{ handlers: Record<string, WorkHandler>; observer: PowerObserver | null; close(): Promise<void> }> {
  const { env, datacenter } = context;
  const url = env.DATABASE_URL?.trim();
  if (!url) throw new Error("the maskin worker needs DATABASE_URL (the inventory, the secret store and the host streams live there)");
  const key = loadSecretKey(env);
  if (!key) throw new Error("the maskin worker needs DV_SECRET_KEY or DV_SECRET_KEY_FILE to reveal BMC passwords");
  const pool = createPool(url, { max: 5 });
  const store = new PostgresEventStore({ pool });
  const secrets = new PostgresSecretStore(pool, key);
  const timeout = Number(env.DV_BMC_TIMEOUT_MS ?? "");
  const access = new BmcAccess({ store, secrets, datacenter, ...(timeout > 0 ? { timeoutMs: timeout } : {}) });
  const intervalText = env.DV_MASKIN_OBSERVE_INTERVAL_MS?.trim();
  const intervalMs = intervalText ? Number(intervalText) : DEFAULT_OBSERVE_INTERVAL_MS;
  if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new Error(`DV_MASKIN_OBSERVE_INTERVAL_MS must be a number of milliseconds, got ${intervalText}`);
  const observer =
    intervalMs > 0
      ? new PowerObserver({
          access,
          store,
          intervalMs,
          onError: (error, what) => console.error(`maskin ${datacenter}: ${what}: ${error instanceof Error ? error.message : String(error)}`),
        })
      : null;
  observer?.start();
  return {
    handlers: createMaskinHandlers({ access }),
    observer,
    async close() {
      await observer?.stop();
      await store.close();
      await pool.end();
    },
  };
}

registerWorkerService({
  service: MASKIN_SERVICE,
  description: "bare metal: BMC power (status/on/off/soft/cycle/reset, converging), one-time boot device; the datacenter's power observer",
  workerOptions: (context) => ({ ackWaitMs: maskinAckWaitMs(context.env) }),
  async handlers(context) {
    const service = await openMaskinService(context);
    opened.push(service);
    return service.handlers;
  },
  async close() {
    const all = opened.splice(0);
    await Promise.all(all.map((s) => s.close()));
  },
});
