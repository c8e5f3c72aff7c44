import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allEvents, appendMixed, caughtUp, createRelayHarness, startRelay, type RelayHarness } from "./support/relay.ts";
import { consumeEvents, OwnNatsServer, testNamespace } from "./support/nats.ts";

/**
 * NATS goes away and comes back. These tests run their own nats-server (own
 * port, own store dir): stopping the shared one would break every other test.
 */
let h: RelayHarness;
const servers: OwnNatsServer[] = [];

beforeAll(async () => {
  h = await createRelayHarness();
});
afterAll(async () => {
  for (const server of servers) await server.dispose();
  await h?.dispose();
});

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function consumeAll(server: OwnNatsServer, ns: ReturnType<typeof testNamespace>, expected: number) {
  const nc: NatsConnection = await connect({ servers: server.url });
  try {
    return await consumeEvents(nc, ns, expected, { timeoutMs: 30_000, settleMs: 1000 });
  } finally {
    await nc.close();
  }
}

describe("relay with NATS down", () => {
  it("keeps commands working while NATS is down, then catches up: every event exactly once, in order", async () => {
    const server = await OwnNatsServer.start();
    servers.push(server);
    const ns = testNamespace("out");
    const running = startRelay(h, ns, server.url, { name: "outage", publishTimeoutMs: 1000 });
    try {
      await appendMixed(h.store, 100, 2);
      await caughtUp(running.relay, h.store);

      // Stop NATS while events keep arriving, so batches are in flight when it goes.
      const writing = appendMixed(h.store, 400, 2);
      await until(async () => (await running.relay.status()).publishedTotal > 110, "the relay to publish during the writes");
      await server.stop();
      await writing; // appends succeed: commands only touch Postgres
      await appendMixed(h.store, 100, 4);

      await until(() => !running.link.connected, "the relay to see NATS gone");
      await until(async () => (await running.relay.status()).state === "retrying" || !running.link.connected, "retrying");
      const down = await running.relay.status();
      expect(down.connected).toBe(false);
      expect(down.lagEvents).toBeGreaterThan(0);

      await server.startAgain();
      await caughtUp(running.relay, h.store, 60_000);
      const status = await running.relay.status();
      expect(status).toMatchObject({ connected: true, lagEvents: 0, state: "live" });
    } finally {
      await running.stop();
    }

    const log = await allEvents(h.store);
    expect(log).toHaveLength(600);
    const received = await consumeAll(server, ns, log.length);
    expect(received.map((m) => m.msgId)).toEqual(log.map((e) => e.id));
    expect(received.map((m) => m.seq)).toEqual(log.map((_, i) => i + 1)); // no gaps, nothing dropped or stored twice
  });

  it("survives the server being killed mid-backlog: the stream stays the log, in order, without gaps or copies", async () => {
    const server = await OwnNatsServer.start();
    servers.push(server);
    const ns = testNamespace("kill");
    await appendMixed(h.store, 10_000, 50);
    const errors: string[] = [];
    const running = startRelay(h, ns, server.url, {
      name: "kill",
      batchSize: 200,
      publishTimeoutMs: 1000,
      onError: (error) => errors.push(error instanceof Error ? error.message : String(error)),
    });
    try {
      await until(() => running.relay.publishedTotal > 1500, "the relay to be mid-backlog");
      await server.kill();
      const published = running.relay.publishedTotal;
      await server.startAgain();
      await caughtUp(running.relay, h.store, 60_000);
      console.log(`relay: killed after ${published} published; ${errors.length} failed batches retried (${[...new Set(errors)].slice(0, 3).join("; ")})`);
    } finally {
      await running.stop();
    }
    const log = await allEvents(h.store);
    const received = await consumeAll(server, ns, log.length);
    expect(received.map((m) => m.msgId)).toEqual(log.map((e) => e.id));
    expect(received.map((m) => m.seq)).toEqual(log.map((_, i) => i + 1));
  });

  it("re-syncs from the stream when someone else wrote to it", async () => {
    const server = await OwnNatsServer.start();
    servers.push(server);
    const ns = testNamespace("foreign");
    const running = startRelay(h, ns, server.url, { name: "foreign" });
    const nc = await connect({ servers: server.url });
    try {
      await caughtUp(running.relay, h.store);
      // A message the relay did not write moves the stream's sequence under it.
      await jetstream(nc).publish(ns.subject("x", "evt", "stray", "written"), "{}");
      await appendMixed(h.store, 30, 3);
      await caughtUp(running.relay, h.store);
    } finally {
      await running.stop();
      await nc.close();
    }
    const log = await allEvents(h.store);
    const received = await consumeAll(server, ns, log.length + 1);
    expect(received.filter((m) => m.msgId !== undefined).map((m) => m.msgId)).toEqual(log.map((e) => e.id));
    expect(received).toHaveLength(log.length + 1);
  });

  it("starts while NATS is down and publishes once it comes up", async () => {
    const server = await OwnNatsServer.create();
    servers.push(server);
    const ns = testNamespace("late");
    const before = (await allEvents(h.store)).length;
    const running = startRelay(h, ns, server.url, { name: "late" });
    try {
      await appendMixed(h.store, 50, 5);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const waiting = await running.relay.status();
      expect(waiting).toMatchObject({ state: "connecting", connected: false, publishedTotal: 0 });
      // Counted up to the probe limit (10,000): earlier tests of this file left a long log.
      expect(waiting.lagEvents).toBe(Math.min(before + 50, 10_000));
      expect(waiting.lagEventsExact).toBe(before + 50 < 10_000);

      await server.startAgain();
      await caughtUp(running.relay, h.store, 30_000);
    } finally {
      await running.stop();
    }
    const log = await allEvents(h.store);
    const received = await consumeAll(server, ns, log.length);
    expect(received.map((m) => m.msgId)).toEqual(log.map((e) => e.id));
  });
});
