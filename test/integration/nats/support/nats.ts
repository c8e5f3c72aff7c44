import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { natsNamespace, type NatsNamespace } from "../../../../adapters/nats/namespace.ts";
import { deleteStreams } from "../../../../adapters/nats/topology.ts";

/** The shared test server; NATS_TEST_URL overrides it. Never stopped by tests. */
export const SHARED_NATS_URL = process.env.NATS_TEST_URL ?? "nats://127.0.0.1:4222";
export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";

/** A namespace no other test file (or run) uses: subjects `<ns>.dv.…`, streams `<NS>_DV_…`. */
export function testNamespace(label: string): NatsNamespace {
  return natsNamespace(`t${label}${randomBytes(3).toString("hex")}`);
}

export async function connectShared(name: string): Promise<NatsConnection> {
  try {
    return await connect({ servers: SHARED_NATS_URL, name, timeout: 3000 });
  } catch (error) {
    throw new Error(
      `NATS is not reachable at ${SHARED_NATS_URL} (${(error as Error).message}). Tests need a real server with JetStream: ` +
        "run `bash .ci/run` once, or `apt-get install nats-server && nats-server -js &`.",
    );
  }
}

export async function dropNamespace(nc: NatsConnection, namespace: NatsNamespace): Promise<void> {
  await deleteStreams(await jetstreamManager(nc), namespace);
}

export interface ReceivedEvent {
  readonly subject: string;
  readonly seq: number;
  readonly msgId: string | undefined;
  readonly headers: Record<string, string>;
  readonly body: Record<string, unknown>;
}

/**
 * Everything in the namespace's DV_EVENTS, read through a durable pull
 * consumer that acks each message (what a saga consumer does), until
 * `expected` messages arrived or `timeoutMs` passed; then a short extra wait
 * so duplicates that would arrive late are seen too.
 */
export async function consumeEvents(
  nc: NatsConnection,
  namespace: NatsNamespace,
  expected: number,
  options: { timeoutMs?: number; settleMs?: number; durable?: string } = {},
): Promise<ReceivedEvent[]> {
  const stream = namespace.stream("DV_EVENTS");
  const jsm = await jetstreamManager(nc);
  const durable = options.durable ?? `check_${randomBytes(4).toString("hex")}`;
  await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
  const consumer = await jetstream(nc).consumers.get(stream, durable);
  const received: ReceivedEvent[] = [];
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let settleUntil: number | null = null;
  try {
    while (Date.now() < deadline && (settleUntil === null || Date.now() < settleUntil)) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
      for await (const msg of batch) {
        received.push(toReceived(msg));
        msg.ack();
      }
      if (received.length >= expected && settleUntil === null) settleUntil = Date.now() + (options.settleMs ?? 300);
    }
  } finally {
    await jsm.consumers.delete(stream, durable).catch(() => {});
  }
  return received;
}

function toReceived(msg: JsMsg): ReceivedEvent {
  const headers: Record<string, string> = {};
  for (const [key, values] of msg.headers ?? []) headers[key] = values[0] ?? "";
  return { subject: msg.subject, seq: msg.seq, msgId: msg.headers?.get("Nats-Msg-Id"), headers, body: msg.json<Record<string, unknown>>() };
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/**
 * A nats-server of the test's own, on a free port with its own JetStream
 * store dir, so a test can stop and restart it without touching the shared one.
 */
export class OwnNatsServer {
  private child: ChildProcess | null = null;
  readonly storeDir: string;
  readonly url: string;

  private constructor(readonly port: number) {
    this.storeDir = mkdtempSync(join(tmpdir(), "dv-nats-"));
    this.url = `nats://127.0.0.1:${port}`;
  }

  static async start(): Promise<OwnNatsServer> {
    const server = await OwnNatsServer.create();
    await server.startAgain();
    return server;
  }

  /** Port and store dir chosen, server not started yet (for "NATS is down when the client starts"). */
  static async create(): Promise<OwnNatsServer> {
    if (!existsSync(NATS_SERVER_BIN)) {
      throw new Error(`${NATS_SERVER_BIN} is missing: this test needs its own NATS server; run \`apt-get install nats-server\` (or set NATS_SERVER_BIN)`);
    }
    return new OwnNatsServer(await freePort());
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** (Re)starts on the same port and store dir; resolves once it accepts clients. */
  async startAgain(): Promise<void> {
    if (this.child) return;
    const child = spawn(NATS_SERVER_BIN, ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.storeDir], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let output = "";
    child.stderr?.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
    this.child = child;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}: ${output}`);
      try {
        const nc = await connect({ servers: this.url, timeout: 500 });
        await jetstreamManager(nc); // JetStream answers too
        await nc.close();
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`nats-server on ${this.url} did not come up: ${(error as Error).message}\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** Kills the server (SIGKILL: connections cut mid-message, nothing flushed), waiting for the process to end. */
  kill(): Promise<void> {
    return this.stop("SIGKILL");
  }

  /** Stops the server (SIGTERM: JetStream flushes its store), waiting for the process to end. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill(signal);
    });
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
