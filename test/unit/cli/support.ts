import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main, type Bin } from "../../../cli/main.ts";
import type { Io } from "../../../cli/core/output.ts";

export interface Captured extends Io {
  stdout: string;
  stderr: string;
}

export function captureIo(): Captured {
  const io = {
    stdout: "",
    stderr: "",
    out(text: string) {
      io.stdout += text;
    },
    err(text: string) {
      io.stderr += text;
    },
  };
  return io;
}

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a bin in-process with its own environment (DV_CONFIG in a temp dir, no inherited DV_*). */
export async function runCli(bin: Bin, argv: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  const io = captureIo();
  const code = await main(bin, argv, io, env);
  return { code, stdout: io.stdout, stderr: io.stderr };
}

export async function tempDir(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), "dv-cli-test-"));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export type Handler = (request: RecordedRequest, response: ServerResponse) => void | Promise<void>;

/** A real HTTP server on 127.0.0.1 with a handler per test; records every request. */
export async function localServer(handler: Handler): Promise<{ url: string; requests: RecordedRequest[]; close(): Promise<void> }> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
    req.on("end", () => {
      const recorded = { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers, body };
      requests.push(recorded);
      Promise.resolve(handler(recorded, res)).catch((error: unknown) => {
        res.statusCode = 599;
        res.end(String(error));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export function json(response: ServerResponse, status: number, body: unknown, type = "application/json"): void {
  response.writeHead(status, { "content-type": type });
  response.end(JSON.stringify(body));
}

/** An environment with nothing of the caller's DV_* settings. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("DV_") && key !== "XDG_CONFIG_HOME") env[key] = value;
  return { ...env, ...extra };
}
