import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsLink } from "../../../adapters/nats/connection.ts";
import { ensureStreams } from "../../../adapters/nats/topology.ts";
import { STREAMS } from "../../../adapters/nats/namespace.ts";
import { DEFAULT_MASKIN_ACK_WAIT_MS, maskinAckWaitMs } from "../../../adapters/workers/maskin/index.ts";
import { WorkResultMessageSchema, type WorkResultMessage } from "../../../adapters/workers/port.ts";
import { workerDurable } from "../../../adapters/workers/worker.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorkers, type WorkersHandle } from "../../../cli/up/sagas.ts";
import { SHARED_NATS_URL, dropNamespace, testNamespace } from "../nats/support/nats.ts";
import { bmcOf, mac, request, startMaskinLab, type MaskinLab } from "./worker-support.ts";

/** The registered `maskin` service as `dv worker --service maskin --datacenter osl1` runs it: over NATS JetStream. */
let lab: MaskinLab;
let link: NatsLink;
let bus: JetStreamSagaBus;
let workers: WorkersHandle;
const namespace = testNamespace("mskw");
const results = new Map<string, WorkResultMessage>();
let stopResults: () => Promise<void>;

beforeAll(async () => {
  lab = await startMaskinLab(2, 1, (b) => [
    { name: "node-01", serial: "SN1", macs: [mac()], bmc: bmcOf(b[0]!) },
    { name: "node-dead", serial: "SN2", macs: [mac()], bmc: bmcOf(b[1]!) },
  ]);
  link = new NatsLink({ servers: SHARED_NATS_URL, name: "test-maskin-worker", reconnectWaitMs: 250 });
  const nc = await link.ready();
  if (!nc) throw new Error("NATS link closed before connecting");
  await ensureStreams(await jetstreamManager(nc), { namespace, duplicateWindowMs: 60_000 });
  bus = new JetStreamSagaBus({ nc, namespace });
  const consumption = bus.consumeResults({ durable: "maskin-test-results", maxInFlight: 10, ackWaitMs: 5_000 }, async (delivery) => {
    const result = WorkResultMessageSchema.parse(JSON.parse(new TextDecoder().decode(delivery.data)));
    if (result.kind !== "progress") results.set(result.requestId, result);
    delivery.ack();
  });
  stopResults = () => consumption.stop();
  workers = await startWorkers({
    nats: link,
    namespace,
    datacenter: "osl1",
    services: ["maskin"],
    // An ack wait shorter than an unreachable BMC takes to fail: the keep-alive must hold the request meanwhile.
    env: { DATABASE_URL: lab.database.url, DV_SECRET_KEY: lab.keyBase64, DV_MASKIN_OBSERVE_INTERVAL_MS: "0", DV_BMC_TIMEOUT_MS: "4000", DV_MASKIN_ACK_WAIT_MS: "1000" },
  });
});
afterAll(async () => {
  await workers?.stop();
  await stopResults?.();
  if (link) {
    const nc = await link.ready();
    if (nc) await dropNamespace(nc, namespace).catch(() => {});
    await link.close();
  }
  await lab?.dispose();
});

async function run(action: string, payload: Record<string, unknown>): Promise<WorkResultMessage> {
  const message = request(action, payload);
  await bus.publishWork(message);
  const deadline = Date.now() + 30_000;
  while (!results.has(message.requestId)) {
    if (Date.now() > deadline) throw new Error(`no result for ${message.requestId}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return results.get(message.requestId)!;
}

describe("the maskin worker service over NATS", () => {
  it("bootdev pxe then power on twice: one `set power 1`; outputs carry the exchanges, never the password", async () => {
    const b = lab.sims.bmcs[0]!;
    const hostId = lab.hostIds.get("node-01")!;
    const start = Date.now();
    const boot = await run("bootdev", { hostId, device: "pxe" });
    expect(boot).toMatchObject({ kind: "succeeded", output: { hostId, device: "pxe", verified: true } });
    const first = await run("power", { hostId, operation: "on" });
    const second = await run("power", { hostId, operation: "on" });
    expect(first).toMatchObject({ kind: "succeeded", output: { changed: true, action: "powerOn", after: "on" } });
    expect(second).toMatchObject({ kind: "succeeded", output: { changed: false, action: null, before: "on" } });
    const sets = (await b.chassisLog()).filter((c) => c.at >= start && c.op === "set").map((c) => c.args.join(" "));
    expect(sets.filter((s) => s.startsWith("power"))).toEqual(["power 1"]);
    expect(await b.bootFlag()).toBe("pxe");
    expect(JSON.stringify([boot, first, second])).not.toContain(b.password);
  });

  it("an unreachable BMC answers a transient failure bmc_unreachable with the dependency to block on", async () => {
    const hostId = lab.hostIds.get("node-dead")!;
    const start = Date.now();
    const result = await run("power", { hostId, operation: "on" });
    expect(result).toMatchObject({ kind: "failed", transient: true, code: "bmc_unreachable", dependency: `bmc ${hostId}` });
    // It took longer than the ack wait, and still nothing was redelivered: the worker kept it alive.
    expect(Date.now() - start).toBeGreaterThan(1_000);
    const nc = (await link.ready())!;
    const info = await (await jetstreamManager(nc)).consumers.info(namespace.stream(STREAMS.work), namespace.stream(workerDurable("maskin", "osl1")));
    expect(info.num_redelivered).toBe(0);
  });

  it("the maskin workers' ack wait is DV_MASKIN_ACK_WAIT_MS (default 10 s), so a request a killed worker left is redelivered soon", async () => {
    const nc = (await link.ready())!;
    const info = await (await jetstreamManager(nc)).consumers.info(namespace.stream(STREAMS.work), namespace.stream(workerDurable("maskin", "osl1")));
    expect(info.config.ack_wait).toBe(1_000 * 1_000_000);
    expect(maskinAckWaitMs({})).toBe(DEFAULT_MASKIN_ACK_WAIT_MS);
    expect(DEFAULT_MASKIN_ACK_WAIT_MS).toBeLessThanOrEqual(10_000);
    expect(maskinAckWaitMs({ DV_MASKIN_ACK_WAIT_MS: " 7500 " })).toBe(7_500);
    for (const bad of ["999", "abc", "-5", "1.5e3x"]) expect(() => maskinAckWaitMs({ DV_MASKIN_ACK_WAIT_MS: bad })).toThrow(/DV_MASKIN_ACK_WAIT_MS/);
  });
});
