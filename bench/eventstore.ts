import { PostgresEventStore } from "../adapters/eventstore/postgres/store.ts";
import type { NewEvent } from "../adapters/eventstore/port.ts";
import { createPool } from "../adapters/postgres/connection.ts";
import { dropDatabase, freshDatabase, log, timed, type BenchResult } from "./support.ts";

const actor = { kind: "system", id: "bench" } as const;

function events(count: number, seed: number): NewEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    type: "ThingHappened",
    data: { seed, i, label: "bench payload of a realistic size", amount: seed * 31 + i },
    actor,
    scope: { tenantId: `t-${seed % 50}` },
  }));
}

/** Writers each append `perAppend` events at a time to streams picked from `streams`, with OCC. */
async function appendLoad(
  store: PostgresEventStore,
  options: { writers: number; appends: number; perAppend: number; streams: number; prefix: string },
): Promise<number> {
  const versions = new Map<string, number>();
  let next = 0;
  const writer = async (w: number) => {
    for (;;) {
      const n = next++;
      if (n >= options.appends) return;
      // Each writer owns a slice of the streams, so the figure measures appends, not retries.
      const stream = `${options.prefix}-${(n * options.writers + w) % options.streams}`;
      const expected = versions.get(stream);
      const result = await store.append(stream, events(options.perAppend, n), {
        expectedVersion: expected === undefined ? "any" : expected,
      }).catch(async (error) => {
        if (error?.name !== "ConcurrencyError") throw error;
        return store.append(stream, events(options.perAppend, n), { expectedVersion: "any" });
      });
      versions.set(stream, result.version);
    }
  };
  const { seconds } = await timed(() => Promise.all(Array.from({ length: options.writers }, (_, w) => writer(w))));
  return (options.appends * options.perAppend) / seconds;
}

export async function eventStoreBenchmarks(): Promise<BenchResult[]> {
  const database = "dv_bench_eventstore";
  const url = await freshDatabase(database);
  const pool = createPool(url, { max: 12 });
  const store = new PostgresEventStore({ pool });
  const results: BenchResult[] = [];
  try {
    log("appends: 1 writer, single events over 1,000 streams");
    const one = await appendLoad(store, { writers: 1, appends: 3_000, perAppend: 1, streams: 1_000, prefix: "w1" });
    results.push({ name: "append 1 event, 1 writer, 1,000 streams", value: Math.round(one), unit: "events/s", target: 1_500, better: "higher" });

    log("appends: 32 writers, single events over 1,000 streams");
    const many = await appendLoad(store, { writers: 32, appends: 40_000, perAppend: 1, streams: 1_000, prefix: "w32" });
    results.push({ name: "append 1 event, 32 writers, 1,000 streams", value: Math.round(many), unit: "events/s", target: 9_000, better: "higher" });

    log("appends: 8 writers, 100-event batches");
    const batches = await appendLoad(store, { writers: 8, appends: 1_500, perAppend: 100, streams: 1_000, prefix: "b100" });
    results.push({ name: "append 100 events, 8 writers", value: Math.round(batches), unit: "events/s", target: 60_000, better: "higher" });

  } finally {
    await store.close();
    await pool.end();
    await dropDatabase(database);
  }
  return results;
}
