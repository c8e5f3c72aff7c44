import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsLink } from "../../../adapters/nats/connection.ts";
import { Relay } from "../../../adapters/nats/relay.ts";
import type { RelayProbe } from "../../../api/observability/health.ts";
import { createApiHarness, type ApiHarness } from "../api/support/harness.ts";
import { connectShared, dropNamespace, freePort, SHARED_NATS_URL, testNamespace } from "./support/nats.ts";
import { appendMixed as appendAny, caughtUp, NEUTRAL } from "./support/relay.ts";
import type { PostgresEventStore } from "../../../adapters/eventstore/postgres/store.ts";

const appendMixed = (store: PostgresEventStore, count: number, perAppend: number) => appendAny(store, count, perAppend, NEUTRAL);

/** /readyz and /metrics with a relay: reported, and only fails readiness when a bound is configured. */
const ns = testNamespace("api");

afterAll(async () => {
  const nc = await connectShared("relay-api-cleanup");
  await dropNamespace(nc, ns).catch(() => {});
  await nc.close();
});

/** A server whose relay (made once the harness's store exists) publishes to `servers`. */
async function serverWithRelay(servers: string, readiness: { maxRelayLagEvents?: number } = {}) {
  let relay: Relay | undefined;
  const probe: RelayProbe = {
    get publishedTotal() {
      return relay?.publishedTotal ?? 0;
    },
    status: () => relay!.status(),
  };
  const api = await createApiHarness({ relay: probe, readiness });
  const link = new NatsLink({ servers, name: "dv-relay-api-test", reconnectWaitMs: 200 });
  relay = new Relay({ store: api.db.store, pool: api.db.pool, nats: link, namespace: ns });
  relay.start();
  const started = relay;
  return {
    api,
    relay: started,
    /** Each server holds a database and two dozen connections: give them back as soon as its test is done. */
    async dispose() {
      await started.stop();
      await link.close();
      await api.dispose();
    },
  };
}

describe("relay in /readyz and /metrics", () => {
  let api: ApiHarness;
  let relay: Relay;
  let dispose: () => Promise<void>;
  beforeAll(async () => {
    ({ api, relay, dispose } = await serverWithRelay(SHARED_NATS_URL));
    await appendMixed(api.db.store, 30, 3);
    await caughtUp(relay, api.db.store);
  });
  afterAll(() => dispose?.());

  it("reports the relay in /readyz", async () => {
    const ready = await api.app.inject({ method: "GET", url: "/readyz" });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().checks.relay).toMatchObject({ ok: true, state: "live", connected: true, lagEvents: 0, maxLagEvents: null });
  });

  it("exports dv_relay_lag_events and dv_relay_published_total", async () => {
    const text = (await api.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(text).toMatch(/^dv_relay_lag_events 0$/m);
    expect(text).toMatch(/^dv_relay_published_total 30$/m);
    await appendMixed(api.db.store, 6, 3);
    await caughtUp(relay, api.db.store);
    expect((await api.app.inject({ method: "GET", url: "/metrics" })).body).toMatch(/^dv_relay_published_total 36$/m);
  });
});

describe("a relay that cannot reach NATS", () => {
  it("leaves the server ready by default, and reports the lag", async () => {
    const { api, dispose } = await serverWithRelay(`nats://127.0.0.1:${await freePort()}`);
    try {
      await appendMixed(api.db.store, 5, 5);
      const ready = await api.app.inject({ method: "GET", url: "/readyz" });
      expect(ready.statusCode).toBe(200);
      expect(ready.json().checks.relay).toMatchObject({ ok: true, connected: false, lagEvents: 5 });
      expect((await api.app.inject({ method: "GET", url: "/metrics" })).body).toMatch(/^dv_relay_lag_events 5$/m);
    } finally {
      await dispose();
    }
  });

  it("makes the server not ready past maxRelayLagEvents", async () => {
    const { api, dispose } = await serverWithRelay(`nats://127.0.0.1:${await freePort()}`, { maxRelayLagEvents: 2 });
    try {
      await appendMixed(api.db.store, 5, 5);
      const ready = await api.app.inject({ method: "GET", url: "/readyz" });
      expect(ready.statusCode).toBe(503);
      expect(ready.json().checks.relay).toMatchObject({ ok: false, connected: false, lagEvents: 5, maxLagEvents: 2 });
    } finally {
      await dispose();
    }
  });
});
