import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { QmpClient, QmpClosedError, QmpConnectError, QmpError, QmpTimeoutError } from "../../../adapters/qemu/qmp.ts";

/**
 * The QMP client's protocol handling against a scripted peer on a unix
 * socket: the cases real QEMU does not produce on demand (a command that is
 * never answered, a peer that dies mid-command, events arriving between a
 * command and its reply, answers out of order, replies split across reads).
 * The happy path against real QEMU is in runtime.test.ts.
 */

type Handler = (message: { execute: string; arguments?: unknown; id?: unknown }, socket: Socket) => void;

let dir: string;
let server: Server | undefined;

const GREETING = `${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "fake" }, capabilities: ["oob"] } })}\r\n`;

function send(socket: Socket, value: unknown): void {
  socket.write(`${JSON.stringify(value)}\r\n`);
}

async function fakeQemu(handler: Handler, options: { greeting?: boolean } = {}): Promise<string> {
  const path = join(dir, "qmp.sock");
  server = createServer((socket) => {
    if (options.greeting !== false) socket.write(GREETING);
    let buffer = "";
    socket.on("data", (chunk) => {
      buffer += chunk.toString();
      let i: number;
      while ((i = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        const message = JSON.parse(line) as { execute: string; id?: unknown };
        if (message.execute === "qmp_capabilities") send(socket, { return: {}, id: message.id });
        else handler(message, socket);
      }
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server!.listen(path, resolve));
  return path;
}

beforeEach(async () => {
  dir = await mkdtemp("/tmp/dvq-qmp-");
});

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe("QmpClient protocol", () => {
  it("matches answers by id when they come out of order, split across reads, with events in between", async () => {
    const held: Array<{ id: unknown; socket: Socket }> = [];
    const path = await fakeQemu((m, socket) => {
      if (m.execute === "slow") return void held.push({ id: m.id, socket });
      if (m.execute === "system_reset") {
        // QEMU sends RESET before the reply; this peer also splits the reply mid-line.
        send(socket, { event: "RESET", data: { guest: false, reason: "host-qmp-system-reset" }, timestamp: { seconds: 1700000000, microseconds: 5000 } });
        const reply = JSON.stringify({ return: {}, id: m.id });
        socket.write(reply.slice(0, 5));
        setTimeout(() => socket.write(`${reply.slice(5)}\r\n`), 20);
        return;
      }
      send(socket, { return: { echo: m.execute }, id: m.id });
      for (const h of held.splice(0)) send(h.socket, { return: "slow-done", id: h.id });
    });
    const qmp = await QmpClient.connect(path);
    expect(qmp.qemuVersion).toEqual({ qemu: { major: 7, minor: 2, micro: 0 }, package: "fake" });
    const slow = qmp.execute("slow");
    const fast = await qmp.execute("fast");
    expect(fast).toEqual({ echo: "fast" });
    expect(await slow).toBe("slow-done");

    const reset = qmp.waitForEvent("RESET", { timeoutMs: 1_000 });
    await qmp.execute("system_reset");
    expect(await reset).toEqual({ event: "RESET", data: { guest: false, reason: "host-qmp-system-reset" }, timestampMs: 1700000000005 });
    qmp.close();
  });

  it("a command with no answer times out (QmpTimeoutError) and a late answer is dropped, the client stays usable", async () => {
    let late: (() => void) | undefined;
    const path = await fakeQemu((m, socket) => {
      if (m.execute === "hang") late = () => send(socket, { return: "too late", id: m.id });
      else send(socket, { return: m.execute, id: m.id });
    });
    const qmp = await QmpClient.connect(path, { commandTimeoutMs: 150 });
    const t0 = Date.now();
    const error = await qmp.execute("hang").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QmpTimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    late?.();
    expect(await qmp.execute("after")).toBe("after");
    qmp.close();
  });

  it("errors carry QEMU's class and desc", async () => {
    const path = await fakeQemu((m, socket) => send(socket, { error: { class: "GenericError", desc: "nope" }, id: m.id }));
    const qmp = await QmpClient.connect(path);
    const error = (await qmp.execute("x").catch((e: unknown) => e)) as QmpError;
    expect(error).toBeInstanceOf(QmpError);
    expect([error.command, error.errorClass, error.desc]).toEqual(["x", "GenericError", "nope"]);
    qmp.close();
  });

  it("the peer closing mid-command rejects it with QmpClosedError, ends event streams and rejects event waiters", async () => {
    const path = await fakeQemu((m, socket) => {
      if (m.execute === "quit") {
        send(socket, { event: "SHUTDOWN", data: { guest: false, reason: "host-qmp-quit" }, timestamp: { seconds: 1, microseconds: 0 } });
        socket.destroy();
      }
    });
    const qmp = await QmpClient.connect(path);
    const events: string[] = [];
    const stream = (async () => {
      for await (const e of qmp.events()) events.push(e.event);
    })();
    const waiter = qmp.waitForEvent("NEVER", { timeoutMs: 5_000 });
    const quit = qmp.execute("quit");
    await expect(quit).rejects.toBeInstanceOf(QmpClosedError);
    await expect(waiter).rejects.toBeInstanceOf(QmpClosedError);
    await stream;
    expect(events).toEqual(["SHUTDOWN"]);
    expect(qmp.isClosed).toBe(true);
    await expect(qmp.execute("query-status")).rejects.toBeInstanceOf(QmpClosedError);
  });

  it("no greeting (another client holds the monitor) is a timeout; no socket is a connect error; long paths are refused", async () => {
    const path = await fakeQemu(() => undefined, { greeting: false });
    await expect(QmpClient.connect(path, { timeoutMs: 200 })).rejects.toBeInstanceOf(QmpTimeoutError);
    await expect(QmpClient.connect(join(dir, "missing.sock"), { timeoutMs: 100 })).rejects.toBeInstanceOf(QmpConnectError);
    await expect(QmpClient.connect(`/tmp/${"y".repeat(120)}`)).rejects.toThrow(/108 bytes/);
  });
});
