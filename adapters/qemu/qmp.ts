import { EventEmitter } from "node:events";
import { createConnection, type Socket } from "node:net";

/**
 * A QMP (QEMU Machine Protocol) client over a unix socket.
 *
 * The protocol: QEMU greets with `{"QMP": {...}}`; the client must send
 * `qmp_capabilities` before anything else; then each `{"execute", "arguments",
 * "id"}` gets exactly one `{"return"|"error", "id"}` answer, while
 * asynchronous `{"event", "data", "timestamp"}` lines arrive at any moment,
 * interleaved with the answers (a RESET event usually comes *before* the
 * `system_reset` reply). So every command carries an `id` and answers are
 * matched by it, never by order; events go to listeners and to async streams.
 *
 * One QMP socket serves one client at a time (a second connection waits
 * without a greeting until the first one closes): callers keep connections
 * short or use a second monitor socket for long-lived event watching.
 */

export const QMP_SOCKET_PATH_MAX = 107;

/** QEMU answered a command with `{"error": {"class", "desc"}}`. */
export class QmpError extends Error {
  override readonly name = "QmpError";
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
  }
}

/** No answer (greeting, reply or event) within the time given. */
export class QmpTimeoutError extends Error {
  override readonly name = "QmpTimeoutError";
  constructor(readonly what: string, readonly timeoutMs: number) {
    super(`QMP ${what}: no answer within ${timeoutMs} ms`);
  }
}

/** The connection closed (QEMU exited, or close() was called) before the answer came. */
export class QmpClosedError extends Error {
  override readonly name = "QmpClosedError";
  constructor(readonly what: string, readonly reason?: string) {
    super(`QMP ${what}: connection closed${reason ? ` (${reason})` : ""}`);
  }
}

/** The socket could not be reached (no QEMU listening, path missing or too long). */
export class QmpConnectError extends Error {
  override readonly name = "QmpConnectError";
  constructor(readonly path: string, readonly reason: string) {
    super(`QMP connect to ${path} failed: ${reason}`);
  }
}

export interface QmpEvent {
  readonly event: string;
  readonly data: Readonly<Record<string, unknown>>;
  /** QEMU's timestamp, in milliseconds since the epoch. */
  readonly timestampMs: number;
}

export interface QmpGreeting {
  readonly version: { readonly qemu: { readonly major: number; readonly minor: number; readonly micro: number }; readonly package?: string };
  readonly capabilities: readonly string[];
}

export interface QmpConnectOptions {
  /** How long to keep trying to connect and to wait for the greeting + negotiation (default 5 s). */
  readonly timeoutMs?: number;
  /** Default timeout per command (default 10 s). */
  readonly commandTimeoutMs?: number;
}

interface Pending {
  readonly command: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export interface QmpClientEvents {
  event: [QmpEvent];
  close: [reason: string | undefined];
}

export class QmpClient extends EventEmitter<QmpClientEvents> {
  private buffer = "";
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedReason: string | undefined;
  private closed = false;
  private greeting: QmpGreeting | undefined;
  private greetingWaiter: ((g: QmpGreeting | Error) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
    private readonly commandTimeoutMs: number,
  ) {
    super();
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("error", (error) => this.onClose(error.message));
    socket.on("close", () => this.onClose(undefined));
  }

  /**
   * Connects (retrying while the socket is missing or refuses, e.g. while QEMU
   * starts), reads the greeting and negotiates capabilities.
   */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    if (Buffer.byteLength(path) > QMP_SOCKET_PATH_MAX) {
      throw new QmpConnectError(path, `unix socket paths must be under 108 bytes (this one is ${Buffer.byteLength(path)})`);
    }
    const timeoutMs = options.timeoutMs ?? 5_000;
    const deadline = Date.now() + timeoutMs;
    let socket: Socket | undefined;
    let lastError = "";
    while (!socket) {
      try {
        socket = await openSocket(path, Math.max(1, deadline - Date.now()));
      } catch (error) {
        lastError = (error as Error).message;
        const code = (error as NodeJS.ErrnoException).code;
        if ((code !== "ENOENT" && code !== "ECONNREFUSED" && code !== "EAGAIN") || Date.now() + 25 >= deadline) {
          throw new QmpConnectError(path, lastError);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    const client = new QmpClient(socket, path, options.commandTimeoutMs ?? 10_000);
    try {
      await client.waitGreeting(Math.max(1, deadline - Date.now()));
      await client.execute("qmp_capabilities", undefined, { timeoutMs: Math.max(1, deadline - Date.now()) });
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get qemuVersion(): QmpGreeting["version"] | undefined {
    return this.greeting?.version;
  }

  /** Sends a command; resolves with its `return` value, rejects with QmpError / QmpTimeoutError / QmpClosedError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closed) return Promise.reject(new QmpClosedError(command, this.closedReason));
    const id = `dv-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const line = JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
      this.socket.write(`${line}\n`, (error) => {
        if (error && this.pending.delete(id)) {
          clearTimeout(timer);
          reject(new QmpClosedError(command, error.message));
        }
      });
    });
  }

  /**
   * A promise for the next event named `name` (and matching `filter`), armed
   * now: call it *before* the command that causes the event.
   */
  waitForEvent(name: string, options: { timeoutMs?: number; filter?: (e: QmpEvent) => boolean } = {}): Promise<QmpEvent> {
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<QmpEvent>((resolve, reject) => {
      if (this.closed) return reject(new QmpClosedError(`waiting for ${name}`, this.closedReason));
      const cleanup = () => {
        clearTimeout(timer);
        this.off("event", onEvent);
        this.off("close", onClose);
      };
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name || (options.filter && !options.filter(e))) return;
        cleanup();
        resolve(e);
      };
      const onClose = (reason: string | undefined) => {
        cleanup();
        reject(new QmpClosedError(`waiting for ${name}`, reason));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new QmpTimeoutError(`event ${name}`, timeoutMs));
      }, timeoutMs);
      this.on("event", onEvent);
      this.on("close", onClose);
    });
  }

  /**
   * Every event from now on, as an async stream; it ends when the connection
   * closes (or when the consumer breaks out of the loop). Events are buffered
   * while the consumer is busy.
   */
  events(): AsyncIterableIterator<QmpEvent> {
    const queue: QmpEvent[] = [];
    let wake: (() => void) | undefined;
    let done = this.closed;
    const onEvent = (e: QmpEvent) => {
      queue.push(e);
      wake?.();
    };
    const onClose = () => {
      done = true;
      wake?.();
    };
    this.on("event", onEvent);
    this.on("close", onClose);
    const detach = () => {
      done = true;
      this.off("event", onEvent);
      this.off("close", onClose);
      wake?.();
    };
    const iterator: AsyncIterableIterator<QmpEvent> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        while (queue.length === 0 && !done) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        const value = queue.shift();
        if (value) return { value, done: false };
        detach();
        return { value: undefined, done: true };
      },
      return: async () => {
        detach();
        queue.length = 0;
        return { value: undefined, done: true };
      },
    };
    return iterator;
  }

  /** Resolves when the connection is closed (by either side). */
  closedPromise(): Promise<string | undefined> {
    if (this.closed) return Promise.resolve(this.closedReason);
    return new Promise((resolve) => this.once("close", resolve));
  }

  close(): void {
    if (this.closed) return;
    this.socket.destroy();
    this.onClose("closed by client");
  }

  private waitGreeting(timeoutMs: number): Promise<QmpGreeting> {
    if (this.greeting) return Promise.resolve(this.greeting);
    if (this.closed) return Promise.reject(new QmpClosedError("greeting", this.closedReason));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.greetingWaiter = undefined;
        reject(new QmpTimeoutError("greeting (is another client connected to this socket?)", timeoutMs));
      }, timeoutMs);
      this.greetingWaiter = (g) => {
        clearTimeout(timer);
        this.greetingWaiter = undefined;
        if (g instanceof Error) reject(g);
        else resolve(g);
      };
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // QEMU only writes JSON here; a torn line is not ours to interpret
    }
    if ("QMP" in message) {
      this.greeting = message.QMP as QmpGreeting;
      this.greetingWaiter?.(this.greeting);
      return;
    }
    if (typeof message.event === "string") {
      const ts = message.timestamp as { seconds?: number; microseconds?: number } | undefined;
      const event: QmpEvent = {
        event: message.event,
        data: (message.data as Record<string, unknown> | undefined) ?? {},
        timestampMs: ts?.seconds !== undefined ? ts.seconds * 1000 + Math.floor((ts.microseconds ?? 0) / 1000) : Date.now(),
      };
      this.emit("event", event);
      return;
    }
    const id = typeof message.id === "string" ? message.id : undefined;
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending || id === undefined) return; // an answer to nobody (e.g. a command that timed out)
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ("error" in message) {
      const error = message.error as { class?: string; desc?: string };
      pending.reject(new QmpError(pending.command, error.class ?? "GenericError", error.desc ?? "(no description)"));
    } else {
      pending.resolve(message.return);
    }
  }

  private onClose(reason: string | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closedReason = reason;
    this.socket.destroy();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new QmpClosedError(p.command, reason));
    }
    this.greetingWaiter?.(new QmpClosedError("greeting", reason));
    this.emit("close", reason);
  }
}

function openSocket(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}
