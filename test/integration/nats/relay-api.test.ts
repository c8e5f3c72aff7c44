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
const relays: Array<{ relay: Relay; link: NatsLink }> = [];
const harnesses: ApiHarness[] = [];

afterAll(async () => {
  for (const { relay, link } of relays) {
    await relay.stop();
    await link.close();
  }
  for (const h of harnesses) await h.dispose();
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
  harnesses.push(api);
  const link = new NatsLink({ servers, name: "dv-relay-api-test", reconnectWaitMs: 200 });
  relay = new Relay({ store: api.db.store, pool: api.db.pool, nats: link, namespace: ns });
  relays.push({ relay, link });
  relay.start();
  return { api, relay };
}

describe("relay in /readyz and /metrics", () => {
  let api: ApiHarness;
  let relay: Relay;
  beforeAll(async () => {
    ({ api, relay } = await serverWithRelay(SHARED_NATS_URL));
    await appendMixed(api.db.store, 30, 3);
    await caughtUp(relay, api.db.store);
  });

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
    const { api } = await serverWithRelay(`nats://127.0.0.1:${await freePort()}`);
    await appendMixed(api.db.store, 5, 5);
    const ready = await api.app.inject({ method: "GET", url: "/readyz" });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().checks.relay).toMatchObject({ ok: true, connected: false, lagEvents: 5 });
    expect((await api.app.inject({ method: "GET", url: "/metrics" })).body).toMatch(/^dv_relay_lag_events 5$/m);
  });

  it("makes the server not ready past maxRelayLagEvents", async () => {
    const { api } = await serverWithRelay(`nats://127.0.0.1:${await freePort()}`, { maxRelayLagEvents: 2 });
    await appendMixed(api.db.store, 5, 5);
    const ready = await api.app.inject({ method: "GET", url: "/readyz" });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().checks.relay).toMatchObject({ ok: false, connected: false, lagEvents: 5, maxLagEvents: 2 });
  });
});
