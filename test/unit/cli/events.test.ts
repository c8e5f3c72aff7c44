import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
// graphql-ws loads graphql as Node resolves it; hand it this test's own copy of each step so the
// schema is never checked by "another realm" of graphql (vitest may load the other build).
import { buildSchema, execute, parse, subscribe, validate } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { formatEventLine, positionOf, tailEvents } from "../../../cli/commands/events.ts";
import { CliError } from "../../../cli/core/errors.ts";
import { ApiClient } from "../../../cli/core/http.ts";
import type { Resource } from "../../../cli/core/resources.ts";
import { json, localServer } from "./support.ts";

const schema = buildSchema(`
  type Query { ok: Boolean }
  type Actor { kind: String id: String }
  type Event { id: ID! type: String! streamId: String! position: String! occurredAt: String! actor: Actor }
  type Subscription { events(streamId: String, afterPosition: String): Event! }
`);

const LOG: Resource[] = [1, 2, 3, 4, 5].map((n) => ({
  id: `e${n}`, type: n === 1 ? "TenantCreated" : "ProjectCreated", streamId: "tenant-t1", position: `100.${n}`, occurredAt: `2025-01-01T00:00:0${n}Z`,
}));

/** A GraphQL-over-WebSocket server with Subscription.events that can drop the connection mid-stream. */
async function graphqlServer(options: { dropAfter?: number } = {}) {
  const subscriptions: Array<{ variables: Record<string, unknown>; query: string; authorization?: string; connectionParams?: unknown }> = [];
  const http: Server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk));
    request.on("end", () => {
      const { query } = JSON.parse(body) as { query: string };
      // Introspection, answered by hand for the two questions the CLI asks.
      const type = (name: string, kind: string) => ({ kind, name, ofType: null });
      const nonNull = (inner: unknown) => ({ kind: "NON_NULL", name: null, ofType: inner });
      const data = query.includes('"Subscription"')
        ? { __type: { fields: [{ name: "events", type: nonNull(type("Event", "OBJECT")) }] } }
        : { __type: { fields: [
            { name: "id", type: nonNull(type("ID", "SCALAR")) }, { name: "type", type: nonNull(type("String", "SCALAR")) },
            { name: "streamId", type: type("String", "SCALAR") }, { name: "position", type: type("String", "SCALAR") },
            { name: "occurredAt", type: type("String", "SCALAR") }, { name: "actor", type: type("Actor", "OBJECT") },
          ] } };
      json(response, 200, { data });
    });
  });
  const wss = new WebSocketServer({ server: http, path: "/graphql" });
  let sockets = 0;
  useServer({
    schema,
    parse,
    validate,
    execute,
    subscribe,
    roots: {
      subscription: {
        events: async function* (args: { afterPosition?: string | null }) {
          const start = args.afterPosition ? LOG.findIndex((e) => e.position === args.afterPosition) + 1 : 0;
          for (const event of LOG.slice(start)) yield { events: event };
          await new Promise(() => {}); // then stay open, like a live tail
        },
      },
    },
    onSubscribe: (ctx, _id, payload) => {
      const request = (ctx.extra as { request: { headers: Record<string, string> } }).request;
      subscriptions.push({ variables: payload.variables ?? {}, query: payload.query, authorization: request.headers.authorization, connectionParams: ctx.connectionParams });
    },
    onNext: (ctx) => {
      // On the first connection, cut the socket just before event dropAfter+1 goes out.
      if (options.dropAfter === undefined || sockets > 0) return;
      const state = ctx as unknown as { sent?: number };
      state.sent = (state.sent ?? 0) + 1;
      if (state.sent === options.dropAfter + 1) {
        sockets++;
        (ctx.extra as { socket: { terminate(): void } }).socket.terminate();
      }
    },
  }, wss);
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    url,
    subscriptions,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup) await fn();
  cleanup = [];
});

/** Tails until `count` events arrived, then aborts; returns them. */
async function collect(client: ApiClient, count: number, options: { stream?: string; after?: string } = {}) {
  const seen: Resource[] = [];
  const notes: string[] = [];
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  await tailEvents(client, options, (event) => {
    seen.push(event);
    if (seen.length >= count) controller.abort();
  }, controller.signal, (line) => notes.push(line));
  clearTimeout(timer);
  return { seen, notes };
}

describe("dv events tail over the GraphQL subscription", () => {
  it("asks for the scalar fields the schema has, sends the token, and prints events as they come", async () => {
    const server = await graphqlServer();
    cleanup.push(server.close);
    const { seen } = await collect(new ApiClient({ apiUrl: server.url, token: "tok" }), 5, { stream: "tenant-t1" });
    expect(seen.map((e) => e.id)).toEqual(["e1", "e2", "e3", "e4", "e5"]);
    expect(server.subscriptions[0]!.query).toMatch(/events\(streamId: \$streamId, afterPosition: \$afterPosition\) \{ id type streamId position occurredAt \}/);
    expect(server.subscriptions[0]!.variables).toEqual({ streamId: "tenant-t1", afterPosition: null });
    expect(server.subscriptions[0]!.authorization).toBe("Bearer tok");
    expect(server.subscriptions[0]!.connectionParams).toEqual({ authorization: "Bearer tok" });
  });

  it("after a dropped connection, resubscribes after the last event printed: nothing twice, nothing skipped", async () => {
    const server = await graphqlServer({ dropAfter: 2 });
    cleanup.push(server.close);
    const { seen, notes } = await collect(new ApiClient({ apiUrl: server.url, token: "tok" }), 5);
    expect(seen.map((e) => e.id)).toEqual(["e1", "e2", "e3", "e4", "e5"]);
    expect(server.subscriptions.map((s) => s.variables.afterPosition)).toEqual([null, "100.2"]);
    expect(notes.join()).toContain("reconnecting");
  });

  it("--after starts after that position", async () => {
    const server = await graphqlServer();
    cleanup.push(server.close);
    const { seen } = await collect(new ApiClient({ apiUrl: server.url, token: "tok" }), 2, { after: "100.3" });
    expect(seen.map((e) => e.id)).toEqual(["e4", "e5"]);
  });
});

describe("dv events tail without GraphQL", () => {
  it("polls GET /v1/events after the last position", async () => {
    const api = await localServer((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/graphql") return json(response, 404, { title: "No such route", code: "route_not_found" });
      const after = url.searchParams.get("after");
      const start = after ? LOG.findIndex((e) => e.position === after) + 1 : 0;
      json(response, 200, { items: LOG.slice(start, start + 2) });
    });
    cleanup.push(api.close);
    const { seen } = await collect(new ApiClient({ apiUrl: api.url, token: "tok" }), 5);
    expect(seen.map((e) => e.id)).toEqual(["e1", "e2", "e3", "e4", "e5"]);
    expect(api.requests.filter((r) => r.url.startsWith("/v1/events")).map((r) => new URL(r.url, "http://x").searchParams.get("after")))
      .toEqual([null, "100.2", "100.4"]);
  });

  it("says so (exit 5) when the server has no event feed at all", async () => {
    const api = await localServer((_request, response) => json(response, 404, { title: "No such route", code: "route_not_found" }));
    cleanup.push(api.close);
    const error = (await collect(new ApiClient({ apiUrl: api.url, token: "tok" }), 1).catch((e: unknown) => e)) as CliError;
    expect(error).toBeInstanceOf(CliError);
    expect(error.exitCode).toBe(5);
    expect(error.message).toContain("no event feed");
  });
});

describe("GraphQL errors", () => {
  it("map to exit codes by extensions.code", async () => {
    const { graphqlErrors } = await import("../../../cli/commands/events.ts");
    expect(graphqlErrors([{ message: "stream x does not exist", extensions: { code: "NOT_FOUND" } }]).exitCode).toBe(2);
    expect(graphqlErrors([{ message: "no", extensions: { code: "UNAUTHENTICATED" } }]).exitCode).toBe(4);
    expect(graphqlErrors([{ message: "bad", extensions: { code: "GRAPHQL_VALIDATION_FAILED" } }]).exitCode).toBe(1);
    expect(graphqlErrors([{ message: "boom", extensions: { code: "INTERNAL_SERVER_ERROR" } }]).exitCode).toBe(5);
  });
});

describe("event lines", () => {
  it("table: position, time, stream, type; json: one object per line", () => {
    expect(formatEventLine(LOG[0]!, "table")).toBe("100.1  2025-01-01T00:00:01Z  tenant-t1  TenantCreated\n");
    expect(JSON.parse(formatEventLine(LOG[0]!, "json"))).toEqual(LOG[0]);
    expect(formatEventLine(LOG[0]!, "json").split("\n")).toHaveLength(2);
    expect(positionOf({ transactionId: "7", globalPosition: 9 })).toBe("7.9");
  });
});
