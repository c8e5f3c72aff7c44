import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { AuthenticatedActor } from "../../../api/auth/types.ts";
import { NatsLink } from "../../../adapters/nats/connection.ts";
import { DLQ_REPLAYS_BUCKET, NatsDeadLetters } from "../../../adapters/nats/dead-letters.ts";
import { STREAMS } from "../../../adapters/nats/namespace.ts";
import { ensureStreams } from "../../../adapters/nats/topology.ts";
import { startWorker, type RunningWorker, type WorkHandler } from "../../../adapters/workers/worker.ts";
import type { WorkRequestMessage } from "../../../adapters/workers/port.ts";
import { createApiHarness, type ApiHarness } from "../api/support/harness.ts";
import { actorHeader, actors } from "../api/support/test-auth.ts";
import { SHARED_NATS_URL, dropNamespace, testNamespace } from "../nats/support/nats.ts";
import { cleanEnv, runCli } from "../../unit/cli/support.ts";

/**
 * DV_DLQ end to end on the shared NATS (a namespace of this file's own) and
 * a real API: a worker gives up on a poison work request, the dead letter is
 * listed with its error, shown, replayed once to its original subject (where
 * a fixed worker handles it exactly once), and replaying it again does
 * nothing. Also driven through the `dv dlq` CLI over HTTP.
 */
const namespace = testNamespace("dlq");
const SERVICE = "ledger";
const DC = "dc1";
const TASK = "t-dlq-1";
const REQUEST = `${TASK}:one:1`;

/** Bearer tokens that name a role (the real identity plugin is tested elsewhere): for the CLI over HTTP. */
const BEARER: Record<string, Omit<AuthenticatedActor, "issuer">> = {
  admin: actors.platformAdmin(),
  auditor: actors.auditor(),
  tenantauditor: actors.auditor("tenant-a"),
  owner: actors.tenantAdmin("tenant-a"),
};
const bearerAuth = {
  async register(app: FastifyInstance) {
    app.decorateRequest("actor", null);
    app.addHook("onRequest", async (request) => {
      const test = request.headers["x-test-actor"];
      if (typeof test === "string") request.actor = { ...JSON.parse(test), issuer: "test" };
      const token = /^Bearer (.+)$/.exec(request.headers.authorization ?? "")?.[1];
      if (token && BEARER[token]) request.actor = { ...BEARER[token]!, issuer: "test" };
    });
  },
};

describe("dead-letter queue: list, show, replay", () => {
  let link: NatsLink;
  let h: ApiHarness;
  let url: string;
  let poisonWorker: RunningWorker | null = null;
  let fixedWorker: RunningWorker | null = null;
  const handled: string[] = [];
  let lastWorkSequence = 0;
  let sequence = 0;
  const admin = actors.platformAdmin();

  const call = (actor: Omit<AuthenticatedActor, "issuer"> | null, method: "GET" | "POST", path: string) =>
    h.app.inject({ method, url: path, headers: actorHeader(actor) });
  const cliEnv = (token: string) => cleanEnv({ DV_CONFIG: "/nonexistent/dv-config.json", DV_API_URL: url, DV_TOKEN: token });

  beforeAll(async () => {
    link = new NatsLink({ servers: SHARED_NATS_URL, name: "test-dlq", reconnectWaitMs: 250 });
    const nc = await link.ready();
    if (!nc) throw new Error("NATS link closed before connecting");
    await ensureStreams(await jetstreamManager(nc), { namespace });
    h = await createApiHarness({ auth: bearerAuth, deadLetters: new NatsDeadLetters({ nats: link, namespace }) });
    await h.app.listen({ host: "127.0.0.1", port: 0 });
    const address = h.app.server.address();
    url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;

    // A worker whose handler throws (not a WorkError): delivered twice, then dead-lettered.
    const crash: WorkHandler = async () => {
      throw new Error("unexpected token in payload at 7");
    };
    poisonWorker = await startWorker({ nc, namespace, service: SERVICE, datacenter: DC, handlers: { record: crash }, maxDeliver: 2, ackWaitMs: 5_000, heartbeatIntervalMs: 500 });
    const request: WorkRequestMessage = {
      requestId: REQUEST,
      taskId: TASK,
      step: "one",
      attempt: 1,
      service: SERVICE,
      action: "record",
      datacenter: DC,
      payload: { amount: 7 },
      correlationId: "corr-dlq-1",
      requestedAt: new Date().toISOString(),
    };
    const hdrs = natsHeaders();
    hdrs.set("Dv-Request-Id", REQUEST);
    hdrs.set("Dv-Correlation-Id", "corr-dlq-1");
    await jetstream(nc).publish(namespace.subject(SERVICE, "cmd", "record", DC), JSON.stringify(request), { msgID: REQUEST, headers: hdrs });
    const jsm = await jetstreamManager(nc);
    const until = Date.now() + 20_000;
    while ((await jsm.streams.info(namespace.stream(STREAMS.dlq))).state.messages < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    await poisonWorker.stop();
    poisonWorker = null;
  }, 60_000);

  afterAll(async () => {
    await poisonWorker?.stop();
    await fixedWorker?.stop();
    await h?.dispose();
    const nc = link?.connection;
    if (nc) {
      await dropNamespace(nc, namespace);
      await (await jetstreamManager(nc)).streams.delete(`KV_${namespace.stream(DLQ_REPLAYS_BUCKET)}`).catch(() => {});
    }
    await link?.close();
  });

  it("lists the poison message with where it came from and its error text", async () => {
    const response = await call(admin, "GET", "/v1/dlq");
    expect(response.statusCode, response.body).toBe(200);
    const page = JSON.parse(response.body);
    expect(page.nextCursor).toBeNull();
    expect(page.items).toHaveLength(1);
    const item = page.items[0];
    expect(item).toMatchObject({
      originalSubject: "dv.ledger.cmd.record.dc1",
      originalStream: namespace.stream(STREAMS.work),
      deliveryCount: 2,
      error: "unexpected token in payload at 7",
      taskId: TASK,
      requestId: REQUEST,
      correlationId: "corr-dlq-1",
      replay: null,
    });
    expect(item.sequence).toBeGreaterThan(0);
    expect(item.originalSequence).toBeGreaterThan(0);
    expect(Date.now() - Date.parse(item.deadLetteredAt)).toBeLessThan(60_000);
    sequence = item.sequence;
  });

  it("shows one dead letter with its headers and its body as pretty JSON", async () => {
    const response = await call(actors.auditor(), "GET", `/v1/dlq/${sequence}`);
    expect(response.statusCode, response.body).toBe(200);
    const letter = JSON.parse(response.body);
    expect(letter.bodyEncoding).toBe("json");
    expect(letter.body).toContain('\n  "requestId": "t-dlq-1:one:1"');
    expect(JSON.parse(letter.body)).toMatchObject({ requestId: REQUEST, payload: { amount: 7 } });
    expect(letter.headers).toMatchObject({ "Dv-Error": "unexpected token in payload at 7", "Dv-Request-Id": REQUEST });
    const missing = await call(admin, "GET", `/v1/dlq/${sequence + 1000}`);
    expect(missing.statusCode).toBe(404);
    expect(JSON.parse(missing.body).code).toBe("dead_letter_not_found");
  });

  it("paginates by sequence", async () => {
    // A second dead letter, written the way the runtime writes them.
    const nc = link.connection!;
    const hdrs = natsHeaders();
    hdrs.set("Dv-Original-Subject", "dv.task.evt.step_started");
    hdrs.set("Dv-Original-Stream", namespace.stream(STREAMS.events));
    hdrs.set("Dv-Stream-Sequence", "41");
    hdrs.set("Dv-Delivery-Count", "5");
    hdrs.set("Dv-Error", "not json");
    hdrs.set("Dv-Stream-Id", "task-t-other");
    await jetstream(nc).publish(namespace.subject("dlq", "msg", "task", "evt", "step_started"), "not json {", { msgID: `dlq:${namespace.stream(STREAMS.events)}:41`, headers: hdrs });
    const first = JSON.parse((await call(admin, "GET", "/v1/dlq?limit=1")).body);
    expect(first.items.map((i: { sequence: number }) => i.sequence)).toEqual([sequence]);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = JSON.parse((await call(admin, "GET", `/v1/dlq?limit=1&cursor=${first.nextCursor}`)).body);
    expect(second.items).toHaveLength(1);
    expect(second.items[0]).toMatchObject({ originalSubject: "dv.task.evt.step_started", taskId: "t-other", error: "not json" });
    expect(second.nextCursor).toBeNull();
    const text = JSON.parse((await call(admin, "GET", `/v1/dlq/${second.items[0].sequence}`)).body);
    expect(text).toMatchObject({ bodyEncoding: "text", body: "not json {" });
  });

  it("lets only platform readers see it and only platform-admins replay it", async () => {
    const owner = actors.tenantAdmin("tenant-a");
    const tenantAuditor = actors.auditor("tenant-a");
    expect((await call(null, "GET", "/v1/dlq")).statusCode).toBe(401);
    expect((await call(owner, "GET", "/v1/dlq")).statusCode).toBe(403);
    expect((await call(tenantAuditor, "GET", "/v1/dlq")).statusCode).toBe(403);
    expect((await call(actors.auditor(), "GET", "/v1/dlq")).statusCode).toBe(200);
    for (const who of [owner, tenantAuditor]) {
      const shown = await call(who, "GET", `/v1/dlq/${sequence}`);
      const missing = await call(admin, "GET", `/v1/dlq/999999`);
      expect(shown.statusCode).toBe(404);
      expect(JSON.parse(shown.body).code).toBe(JSON.parse(missing.body).code);
      expect((await call(who, "POST", `/v1/dlq/${sequence}/replay`)).statusCode).toBe(404);
    }
    expect((await call(actors.auditor(), "POST", `/v1/dlq/${sequence}/replay`)).statusCode).toBe(403);
    // Nothing was replayed by any of them.
    expect(JSON.parse((await call(admin, "GET", `/v1/dlq/${sequence}`)).body).replay).toBeNull();
  });

  it("replays it once to its original subject, where a fixed worker handles it; a second replay does nothing", async () => {
    const nc = link.connection!;
    const ok: WorkHandler = async (request) => {
      handled.push(request.requestId);
      return { recorded: true };
    };
    fixedWorker = await startWorker({ nc, namespace, service: SERVICE, datacenter: DC, handlers: { record: ok }, maxDeliver: 2, ackWaitMs: 5_000, heartbeatIntervalMs: 500 });

    const first = await call(admin, "POST", `/v1/dlq/${sequence}/replay`);
    expect(first.statusCode, first.body).toBe(200);
    const outcome = JSON.parse(first.body);
    expect(outcome.published).toBe(true);
    expect(outcome.replay).toMatchObject({ stream: namespace.stream(STREAMS.work), messageId: expect.stringMatching(new RegExp(`:replay:${sequence}$`)) });
    expect(outcome.deadLetter.replay).toEqual(outcome.replay);

    const until = Date.now() + 15_000;
    while (handled.length < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(handled).toEqual([REQUEST]);

    const again = await call(admin, "POST", `/v1/dlq/${sequence}/replay`);
    expect(again.statusCode, again.body).toBe(200);
    expect(JSON.parse(again.body)).toMatchObject({ published: false, replay: outcome.replay });
    // Concurrent replays of the same letter publish nothing more either.
    const burst = await Promise.all([1, 2, 3].map(() => call(admin, "POST", `/v1/dlq/${sequence}/replay`)));
    expect(burst.map((r) => JSON.parse(r.body).published)).toEqual([false, false, false]);
    await new Promise((r) => setTimeout(r, 1_000));
    // Nothing more was published (the stream's last message is the one replay); delivery is at least once, so a
    // redelivery of that one message under load may run the handler again, but never another request.
    expect(new Set(handled)).toEqual(new Set([REQUEST]));
    const work = await (await jetstreamManager(nc)).streams.info(namespace.stream(STREAMS.work));
    expect(work.state.last_seq).toBe(outcome.replay.sequence);
    lastWorkSequence = work.state.last_seq;

    // The dead letter stays, marked replayed.
    const listed = JSON.parse((await call(admin, "GET", "/v1/dlq")).body).items.find((i: { sequence: number }) => i.sequence === sequence);
    expect(listed.replay).toEqual(outcome.replay);
  });

  it("answers 503 dlq_unavailable while NATS is not connected", async () => {
    const closed = new NatsLink({ servers: SHARED_NATS_URL, name: "test-dlq-closed" });
    await closed.close();
    const other = await createApiHarness({ deadLetters: new NatsDeadLetters({ nats: closed, namespace }) });
    const none = await createApiHarness();
    try {
      for (const harness of [other, none]) {
        const response = await harness.call(admin, { method: "GET", url: "/v1/dlq" });
        expect(response.statusCode).toBe(503);
        expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(JSON.parse(response.body).code).toBe("dlq_unavailable");
        expect(response.headers["retry-after"]).toBe("2");
        // Access is decided first: a tenant's admin still gets 403/404, not 503.
        expect((await harness.call(actors.tenantAdmin("a"), { method: "GET", url: "/v1/dlq" })).statusCode).toBe(403);
        expect((await harness.call(actors.tenantAdmin("a"), { method: "GET", url: "/v1/dlq/1" })).statusCode).toBe(404);
      }
    } finally {
      await other.dispose();
      await none.dispose();
    }
  });

  it("dv dlq list, show and replay over HTTP", async () => {
    const list = await runCli("dv", ["dlq", "list", "-o", "json"], cliEnv("admin"));
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).map((i: { sequence: number }) => i.sequence)).toContain(sequence);
    const table = await runCli("dv", ["dlq", "list"], cliEnv("auditor"));
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^SEQ\s+SUBJECT/);
    expect(table.stdout).toContain("unexpected token in payload at 7");
    const show = await runCli("dv", ["dlq", "show", String(sequence)], cliEnv("auditor"));
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain('"requestId": "t-dlq-1:one:1"');
    const replay = await runCli("dv", ["dlq", "replay", String(sequence), "-o", "json"], cliEnv("admin"));
    expect(replay.code, replay.stderr).toBe(0);
    expect(JSON.parse(replay.stdout).published).toBe(false);
    expect((await runCli("dv", ["dlq", "replay", String(sequence)], cliEnv("auditor"))).code).toBe(4);
    expect((await runCli("dv", ["dlq", "show", String(sequence)], cliEnv("owner"))).code).toBe(2);
    expect((await runCli("dv", ["dlq", "list"], cliEnv("tenantauditor"))).code).toBe(4);
    expect(new Set(handled)).toEqual(new Set([REQUEST]));
    const work = await (await jetstreamManager(link.connection!)).streams.info(namespace.stream(STREAMS.work));
    expect(work.state.last_seq, "the CLI replay published nothing").toBe(lastWorkSequence);
  });
});
