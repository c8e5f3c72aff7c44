import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { headers, nanos, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPosition } from "../../../adapters/eventstore/position.ts";
import { EVENT_HEADERS, relayedEvent } from "../../../adapters/nats/relay.ts";
import { subjectForEvent } from "../../../adapters/nats/subjects.ts";
import { ensureStreams } from "../../../adapters/nats/topology.ts";
import { connectShared, consumeEvents, dropNamespace, SHARED_NATS_URL, testNamespace } from "./support/nats.ts";
import { allEvents, appendMixed, caughtUp, createRelayHarness, startRelay, type RelayHarness } from "./support/relay.ts";

let h: RelayHarness;
let nc: NatsConnection;
const ns = testNamespace("rel");

beforeAll(async () => {
  nc = await connectShared("relay-test-checker");
  h = await createRelayHarness();
});
afterAll(async () => {
  if (nc) {
    await dropNamespace(nc, ns).catch(() => {});
    await nc.close();
  }
  await h?.dispose();
});

describe("topology", () => {
  it("creates the four streams once, with the documented settings, and changes nothing when run again", async () => {
    const own = testNamespace("top");
    const jsm = await jetstreamManager(nc);
    try {
      const first = await ensureStreams(jsm, { namespace: own });
      expect(first.map((s) => [s.name, s.action])).toEqual([
        [own.stream("DV_EVENTS"), "created"],
        [own.stream("DV_WORK"), "created"],
        [own.stream("DV_RESULTS"), "created"],
        [own.stream("DV_DLQ"), "created"],
      ]);
      expect((await ensureStreams(jsm, { namespace: own })).map((s) => s.action)).toEqual(["unchanged", "unchanged", "unchanged", "unchanged"]);

      const events = (await jsm.streams.info(own.stream("DV_EVENTS"))).config;
      expect(events.subjects).toEqual([`${own.prefix}.dv.*.evt.>`]);
      expect(events.retention).toBe(RetentionPolicy.Limits);
      expect(events.storage).toBe(StorageType.File);
      expect(events.duplicate_window).toBe(nanos(10 * 60_000));
      const work = (await jsm.streams.info(own.stream("DV_WORK"))).config;
      expect(work.subjects).toEqual([`${own.prefix}.dv.*.cmd.>`]);
      expect(work.retention).toBe(RetentionPolicy.Workqueue);
      expect((await jsm.streams.info(own.stream("DV_RESULTS"))).config.subjects).toEqual([`${own.prefix}.dv.*.res.>`]);
      expect((await jsm.streams.info(own.stream("DV_DLQ"))).config.subjects).toEqual([`${own.prefix}.dv.dlq.msg.>`]);

      // A changed setting is updated in place.
      const changed = await ensureStreams(jsm, { namespace: own, duplicateWindowMs: 5 * 60_000 });
      expect(changed.every((s) => s.action === "updated")).toBe(true);
      expect((await jsm.streams.info(own.stream("DV_EVENTS"))).config.duplicate_window).toBe(nanos(5 * 60_000));
    } finally {
      await dropNamespace(nc, own);
    }
  });
});

describe("relay", () => {
  it("publishes every event in log order, on its subject, with its headers and envelope", async () => {
    await appendMixed(h.store, 120, 3);
    const running = startRelay(h, ns, SHARED_NATS_URL);
    try {
      await caughtUp(running.relay, h.store);
      await appendMixed(h.store, 40, 1); // live: woken by the store, not a restart
      await caughtUp(running.relay, h.store);
      const status = await running.relay.status();
      expect(status).toMatchObject({ state: "live", lagEvents: 0, connected: true, lastError: null, publishedTotal: 160 });
    } finally {
      await running.stop();
    }

    const log = await allEvents(h.store);
    expect(log).toHaveLength(160);
    const received = await consumeEvents(nc, ns, log.length);
    expect(received.map((m) => m.msgId)).toEqual(log.map((e) => e.id));
    received.forEach((message, index) => {
      const event = log[index]!;
      expect(message.subject).toBe(ns.qualify(subjectForEvent(event)));
      expect(message.headers).toMatchObject({
        "Nats-Msg-Id": event.id,
        [EVENT_HEADERS.type]: event.type,
        [EVENT_HEADERS.streamId]: event.streamId,
        [EVENT_HEADERS.position]: formatPosition(event),
        [EVENT_HEADERS.correlationId]: event.correlationId,
      });
      expect(message.body).toEqual(JSON.parse(JSON.stringify(relayedEvent(event))));
    });
    // A few concrete subjects, so a mapping bug cannot hide behind subjectForEvent itself.
    const subjects = new Set(received.map((m) => ns.unqualify(m.subject)));
    for (const subject of ["dv.sentral.evt.project.created", "dv.sentral.evt.tenant_quota.set", "dv.identitet.evt.role.granted", "dv.task.evt.step_started", "dv.vm.evt.vm.created"]) {
      expect(subjects).toContain(subject);
    }
    const { rows } = await h.pool.query("select transaction_id::text || '.' || global_position as position, events_published from relay.checkpoints");
    expect(rows).toEqual([{ position: formatPosition(log.at(-1)!), events_published: "160" }]);
  });

  it("after a crash between publish and checkpoint, consumers still see each event once", async () => {
    // The previous test published everything; simulate a relay that died before writing its checkpoint.
    await h.pool.query("update relay.checkpoints set transaction_id = '0'::xid8, global_position = 0");
    const before = await allEvents(h.store);

    // A copy published again (what a blind republish would do) is dropped by Nats-Msg-Id.
    const js = jetstream(nc);
    for (const event of before.slice(0, 20)) {
      const h2 = headers();
      h2.set(EVENT_HEADERS.position, formatPosition(event));
      const ack = await js.publish(ns.qualify(subjectForEvent(event)), JSON.stringify(relayedEvent(event)), { msgID: event.id, headers: h2 });
      expect(ack.duplicate).toBe(true);
    }

    const running = startRelay(h, ns, SHARED_NATS_URL);
    try {
      await appendMixed(h.store, 50, 5);
      await caughtUp(running.relay, h.store);
      // It continued from the stream's last message, so it republished nothing.
      expect((await running.relay.status()).publishedTotal).toBe(50);
    } finally {
      await running.stop();
    }
    const log = await allEvents(h.store);
    const received = await consumeEvents(nc, ns, log.length);
    expect(received.map((m) => m.msgId)).toEqual(log.map((e) => e.id));
    expect(new Set(received.map((m) => m.msgId)).size).toBe(received.length);
  });

  it("catches up a backlog of 20,000 events in order (throughput is printed; bench/ measures it)", async () => {
    await appendMixed(h.store, 20_000, 100);
    const log = await allEvents(h.store);
    const running = startRelay(h, ns, SHARED_NATS_URL);
    const started = Date.now();
    try {
      // Watch the in-process counter (cheap), then confirm with status().
      while (running.relay.publishedTotal === 0 && Date.now() - started < 60_000) await new Promise((resolve) => setTimeout(resolve, 1));
      const first = { at: Date.now(), count: running.relay.publishedTotal };
      while (running.relay.publishedTotal < 20_000 && Date.now() - started < 60_000) await new Promise((resolve) => setTimeout(resolve, 5));
      const seconds = (Date.now() - first.at) / 1000;
      const rate = Math.round((20_000 - first.count) / seconds);
      console.log(`relay: 20,000 events in ${((Date.now() - started) / 1000).toFixed(2)} s with connecting; ${rate} events/s once publishing`);
      await caughtUp(running.relay, h.store, 60_000);
    } finally {
      await running.stop();
    }
    const stream = await (await jetstreamManager(nc)).streams.info(ns.stream("DV_EVENTS"));
    expect(stream.state.messages).toBe(log.length);
    const lastTwo = await consumeEvents(nc, ns, log.length, { timeoutMs: 60_000 });
    expect(lastTwo.map((m) => m.msgId)).toEqual(log.map((e) => e.id));
  });

  it("does not trust a stream that holds another log's events (a restored or foreign database): it goes on from its own checkpoint", async () => {
    const [mine, other] = await Promise.all([createRelayHarness(), createRelayHarness()]);
    const shared = testNamespace("two");
    const errors: string[] = [];
    try {
      await appendMixed(other.store, 10, 2); // written first: positions below h's next ones
      await appendMixed(mine.store, 10, 2);
      const ours = startRelay(mine, shared, SHARED_NATS_URL, { name: "two" });
      try {
        await caughtUp(ours.relay, mine.store);
      } finally {
        await ours.stop();
      }
      const theirs = startRelay(other, shared, SHARED_NATS_URL, { name: "two", onError: (e) => errors.push((e as Error).message) });
      try {
        await caughtUp(theirs.relay, other.store);
        expect((await theirs.relay.status()).publishedTotal).toBe(10);
      } finally {
        await theirs.stop();
      }
      const otherLog = await allEvents(other.store);
      const received = await consumeEvents(nc, shared, 20);
      expect(received.map((m) => m.msgId)).toEqual([...(await allEvents(mine.store)), ...otherLog].map((e) => e.id));
      expect(errors.some((e) => /not in this event log/.test(e))).toBe(true);
    } finally {
      await dropNamespace(nc, shared).catch(() => {});
      await Promise.all([mine.dispose(), other.dispose()]);
    }
  });
});
