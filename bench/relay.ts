import { randomBytes } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { PostgresEventStore } from "../adapters/eventstore/postgres/store.ts";
import type { NewEvent } from "../adapters/eventstore/port.ts";
import { formatPosition } from "../adapters/eventstore/position.ts";
import { NatsLink, natsUrl } from "../adapters/nats/connection.ts";
import { natsNamespace, STREAMS, type NatsNamespace } from "../adapters/nats/namespace.ts";
import { EVENT_HEADERS, Relay } from "../adapters/nats/relay.ts";
import { deleteStreams, ensureStreams } from "../adapters/nats/topology.ts";
import { createPool } from "../adapters/postgres/connection.ts";
import { dropDatabase, freshDatabase, log, timed, type BenchResult } from "./support.ts";

const actor = { kind: "system", id: "bench" } as const;

/** An isolated NATS namespace per run (`b<label><hex>.dv.…`, streams `B…_DV_…`); its streams are deleted afterwards. */
export function benchNamespace(label: string): NatsNamespace {
  return natsNamespace(`b${label}${randomBytes(3).toString("hex")}`);
}

function events(count: number, seed: number): NewEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    type: "ThingHappened",
    data: { seed, i, label: "bench payload of a realistic size", amount: seed * 31 + i },
    actor,
    scope: { tenantId: `t-${seed % 50}` },
  }));
}

/**
 * The relay catching up on a log it has never published: `events` events
 * over 1,000 streams (appended 100 at a time by 8 writers), then a Relay
 * started from its (empty) checkpoint into a fresh namespace's DV_EVENTS,
 * timed until the stream's last message carries the log's head position.
 */
export async function relayBenchmarks(options: { events: number }): Promise<BenchResult[]> {
  const database = "dv_bench_relay";
  const url = await freshDatabase(database);
  const pool = createPool(url, { max: 12 });
  const store = new PostgresEventStore({ pool });
  const namespace = benchNamespace("relay");
  const link = new NatsLink({ servers: natsUrl(), name: "bench-relay" });
  let relay: Relay | null = null;
  const results: BenchResult[] = [];
  try {
    const perAppend = 100;
    const appends = Math.ceil(options.events / perAppend);
    log(`relay: filling the log with ${(appends * perAppend).toLocaleString("en")} events over 1,000 streams`);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let n = next++; n < appends; n = next++) await store.append(`bench-${n % 1_000}`, events(perAppend, n), { expectedVersion: "any" });
      }),
    );
    const head = await store.headPosition();
    const total = Number((await pool.query("select count(*) from eventstore.events")).rows[0].count);

    const nc = await link.ready();
    if (!nc) throw new Error("NATS link closed before connecting");
    const jsm = await jetstreamManager(nc);
    await ensureStreams(jsm, { namespace });
    const streamName = namespace.stream(STREAMS.events);

    log(`relay: publishing ${total.toLocaleString("en")} events to ${streamName}`);
    const errors: unknown[] = [];
    relay = new Relay({ store, pool, nats: link, namespace, onError: (error) => errors.push(error) });
    const started = relay;
    const { seconds } = await timed(async () => {
      started.start();
      // publishedTotal counts what JetStream acked; poll it cheaply, then check the stream itself.
      while (started.publishedTotal < total) {
        if (errors.length > 5) throw new Error(`relay keeps failing: ${String(errors.at(-1))}`);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    });
    const info = await jsm.streams.info(streamName);
    const last = await jsm.streams.getMessage(streamName, { seq: info.state.last_seq });
    const lastPosition = last?.header?.get(EVENT_HEADERS.position);
    if (info.state.messages !== total || lastPosition !== formatPosition(head)) {
      throw new Error(`relay: the stream holds ${info.state.messages} messages ending at ${lastPosition}; expected ${total} ending at ${formatPosition(head)}`);
    }
    log(`relay: ${total} events in ${seconds.toFixed(2)} s (${errors.length} errors)`);
    results.push({
      name: `relay catch-up to JetStream (${total.toLocaleString("en")} events)`,
      value: Math.round(total / seconds),
      unit: "events/s",
      target: 20_000,
      better: "higher",
    });
  } finally {
    await relay?.stop();
    const nc = link.connection;
    if (nc) await deleteStreams(await jetstreamManager(nc), namespace).catch((error: unknown) => log(`relay: could not delete ${namespace.prefix}'s streams: ${String(error)}`));
    await link.close();
    await store.close();
    await pool.end();
    await dropDatabase(database);
  }
  return results;
}
