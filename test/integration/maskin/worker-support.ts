import { randomBytes } from "node:crypto";
import type pg from "pg";
import { createPool } from "../../../adapters/postgres/connection.ts";
import { PostgresEventStore } from "../../../adapters/eventstore/postgres/store.ts";
import { deriveKey, PostgresSecretStore } from "../../../adapters/secrets/index.ts";
import type { WorkRequestMessage } from "../../../adapters/workers/port.ts";
import type { WorkContext } from "../../../adapters/workers/worker.ts";
import { importInventory } from "../../../commands/inventory/index.ts";
import type { DocHost } from "../../../commands/inventory/document.ts";
import { startIpmiSims, type IpmiSimLab, type SimulatedBmc } from "../../support/ipmi-sim.ts";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.ts";

/** A database with an inventory whose hosts' BMCs are real ipmi_sim processes; the last BMC is stopped (unreachable). */
export interface MaskinLab {
  readonly database: TestDatabase;
  readonly pool: pg.Pool;
  readonly store: PostgresEventStore;
  readonly secrets: PostgresSecretStore;
  readonly keyBase64: string;
  readonly sims: IpmiSimLab;
  /** Host name -> inventory host id. */
  readonly hostIds: ReadonlyMap<string, string>;
  dispose(): Promise<void>;
}

export const context = { actor: { kind: "user", id: "operator" }, correlationId: "c-maskin-worker" } as const;

/**
 * `hosts(bmcs)` names the inventory hosts of datacenter osl1 (rack r01) given
 * the simulated BMCs; `count` BMCs are started and the last `stopped` of them
 * are stopped again (their ports then answer nothing).
 */
export async function startMaskinLab(count: number, stopped: number, hosts: (bmcs: readonly SimulatedBmc[]) => DocHost[]): Promise<MaskinLab> {
  const sims = await startIpmiSims(count);
  const database = await createTestDatabase();
  const pool = createPool(database.url, { max: 8 });
  const store = new PostgresEventStore({ pool });
  const raw = randomBytes(32);
  const secrets = new PostgresSecretStore(pool, deriveKey(raw));
  for (const b of sims.bmcs.slice(count - stopped)) await b.stop();
  const report = await importInventory(
    { store, secrets },
    { datacenters: [{ name: "osl1", racks: [{ name: "r01", hosts: hosts(sims.bmcs) }] }] },
    { dryRun: false },
    context,
  );
  const hostIds = new Map(report.items.filter((i) => i.kind === "host").map((i) => [i.name, i.id!] as const));
  return {
    database,
    pool,
    store,
    secrets,
    keyBase64: raw.toString("base64"),
    sims,
    hostIds,
    async dispose() {
      await sims.stop();
      await store.close();
      await pool.end();
      await database.drop();
    },
  };
}

export function bmcOf(b: SimulatedBmc, password = b.password): DocHost["bmc"] {
  return { driver: "ipmi", address: b.address, port: b.port, username: b.username, password };
}

let seq = 0;
export function mac(): string {
  const n = ++seq;
  return `52:54:00:aa:00:${n.toString(16).padStart(2, "0")}`;
}

export function request(action: string, payload: Record<string, unknown>): WorkRequestMessage {
  const n = ++seq;
  return {
    requestId: `t${n}:step:1`,
    taskId: `t${n}`,
    step: "step",
    attempt: 1,
    service: "maskin",
    action,
    datacenter: "osl1",
    payload,
    correlationId: `c${n}`,
    requestedAt: new Date().toISOString(),
  };
}

export function workContext(): WorkContext {
  return { signal: new AbortController().signal, progress: () => {}, workerId: "test-worker", deliveryCount: 1 };
}
