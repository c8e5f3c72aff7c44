import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

/**
 * A tiny boot server for checking the lab itself (no platform involved):
 * serves an iPXE script per MAC, the payload's kernel and initrd, and records
 * the installer's callback. Every request is logged with its time.
 */
export interface LoggedRequest {
  readonly at: number;
  readonly method: string;
  readonly url: string;
}

export interface MiniBootServer {
  readonly port: number;
  readonly requests: LoggedRequest[];
  close(): Promise<void>;
}

export async function startMiniBootServer(handler: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void): Promise<MiniBootServer> {
  const requests: LoggedRequest[] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ at: Date.now(), method: req.method ?? "GET", url: req.url ?? "/" });
    Promise.resolve(handler(req, res, new URL(req.url ?? "/", "http://boot"))).catch((error) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as { port: number };
  return {
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
