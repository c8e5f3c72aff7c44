import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { START, type AppendResult, type LogPosition, type NewEvent, type RecordedEvent } from "../../../../adapters/eventstore/port.ts";
import { comparePositions, formatPosition } from "../../../../adapters/eventstore/position.ts";
import { PostgresEventStore } from "../../../../adapters/eventstore/postgres/store.ts";
import { NatsLink } from "../../../../adapters/nats/connection.ts";
import type { NatsNamespace } from "../../../../adapters/nats/namespace.ts";
import { Relay, type RelayOptions } from "../../../../adapters/nats/relay.ts";
import { createPool } from "../../../../adapters/postgres/connection.ts";
import { createTestDatabase, type TestDatabase } from "../../../support/postgres.ts";

export interface RelayHarness {
  readonly database: TestDatabase;
  readonly pool: pg.Pool;
  readonly store: PostgresEventStore;
  dispose(): Promise<void>;
}

export async function createRelayHarness(): Promise<RelayHarness> {
  const database = await createTestDatabase();
  const pool = createPool(database.url, { max: 10 });
  const store = new PostgresEventStore({ pool });
  return {
    database,
    pool,
    store,
    async dispose() {
      await store.close();
      await pool.end();
      await database.drop();
    },
  };
}

const actor = { kind: "user", id: "relay-tester" } as const;

export function newEvent(type: string, data: unknown = {}): NewEvent {
  return { type, data, actor, scope: { tenantId: "t-relay" }, datacenter: "dc1", correlationId: uuidv7() };
}

const MIXED: Array<[prefix: string, types: string[]]> = [
  ["tenant-", ["ProjectCreated", "TenantQuotaSet", "EnvironmentArchived"]],
  ["identity-user:", ["RoleGranted", "RoleRevoked"]],
  ["task-", ["TaskStepStarted", "TaskCreated"]],
  ["vm-", ["VmCreated"]],
];

/** Types no projection reads (for tests that run the real read models beside the relay). */
export const NEUTRAL: Array<[prefix: string, types: string[]]> = [["probe-", ["ProbeTicked", "ProbeTocked"]]];

/**
 * Appends `count` events over a few streams of several services, `perAppend`
 * per call. Their data is not what the domain's projections expect: only use
 * the default `kinds` where no real projection runs.
 */
export async function appendMixed(store: PostgresEventStore, count: number, perAppend = 1, kinds = MIXED): Promise<void> {
  const run = uuidv7().slice(-6);
  const appends: Array<Promise<AppendResult>> = [];
  let last: LogPosition = START;
  const note = (results: AppendResult[]) => {
    for (const r of results) if (comparePositions(r.position, last) > 0) last = r.position;
  };
  for (let i = 0; i < count; i += perAppend) {
    const [prefix, types] = kinds[(i / perAppend) % kinds.length]!;
    const events = Array.from({ length: Math.min(perAppend, count - i) }, (_, k) => newEvent(types[(i + k) % types.length]!, { n: i + k }));
    appends.push(store.append(`${prefix}${run}-${(i / perAppend) % 7}`, events, { expectedVersion: "any" }));
    if (appends.length >= 20) note(await Promise.all(appends.splice(0)));
  }
  note(await Promise.all(appends));
  // Readable (no older transaction anywhere on the server still open), so the relay can see them all.
  await store.waitUntilReadable(last, 30_000);
}

export async function allEvents(store: PostgresEventStore): Promise<RecordedEvent[]> {
  const all: RecordedEvent[] = [];
  for (;;) {
    const batch = await store.readAll({ after: all.at(-1) ?? undefined, limit: 1000 });
    if (batch.length === 0) return all;
    all.push(...batch);
  }
}

export function startRelay(
  h: RelayHarness,
  namespace: NatsNamespace,
  servers: string,
  extra: Partial<RelayOptions> = {},
): { relay: Relay; link: NatsLink; stop(): Promise<void> } {
  const link = new NatsLink({ servers, name: "dv-relay-test", reconnectWaitMs: 200 });
  const relay = new Relay({ store: h.store, pool: h.pool, nats: link, namespace, retry: { initialMs: 50, maxMs: 500 }, publishTimeoutMs: 2000, ...extra });
  relay.start();
  return {
    relay,
    link,
    async stop() {
      await relay.stop();
      await link.close();
    },
  };
}

/** Waits until the relay's checkpointed position is the log's head and nothing lags. */
export async function caughtUp(relay: Relay, store: PostgresEventStore, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const head = formatPosition(await store.headPosition());
    const status = await relay.status();
    last = JSON.stringify(status);
    if (status.lagEvents === 0 && status.position === head) return;
    if (Date.now() > deadline) throw new Error(`relay did not catch up within ${timeoutMs} ms: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
