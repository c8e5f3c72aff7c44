import type { Command } from "commander";
import { CliError, ExitCode } from "../core/errors.ts";
import type { ApiClient } from "../core/http.ts";
import { cell } from "../core/output.ts";
import { itemsOf, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";

/**
 * `dv events tail`: follow the event log as it is written.
 *
 * Preferred feed: the GraphQL subscription `events(streamId, afterPosition)`
 * over graphql-transport-ws at ws(s)://API/graphql. When the server has no such
 * subscription, the REST fallback polls `GET /v1/events?after=&streamId=`.
 * Either way the tail resumes after the last event it printed when the
 * connection drops, so nothing is shown twice or skipped.
 */

export const EVENT_FIELDS = "id type schemaVersion streamId streamPosition globalPosition occurredAt data";

export const EVENTS_SUBSCRIPTION = `subscription Tail($streamId: String, $afterPosition: String) {
  events(streamId: $streamId, afterPosition: $afterPosition) { ${EVENT_FIELDS} }
}`;

export interface TailOptions {
  stream?: string;
  after?: string;
}

/** One event line: position, time, stream, type (table), or the event as one JSON line (json). */
export function formatEventLine(event: Resource, format: "table" | "json"): string {
  if (format === "json") return `${JSON.stringify(event)}\n`;
  const position = event.globalPosition ?? event.position ?? "-";
  return `${cell(position)}  ${cell(event.occurredAt)}  ${cell(event.streamId)}  ${cell(event.type)}\n`;
}

function positionOf(event: Resource): string | undefined {
  const position = event.position ?? event.globalPosition;
  return position === undefined || position === null ? undefined : String(position);
}

export function registerEventCommands(program: Command, runtime: Runtime): void {
  const events = program.command("events").description("the event log: every change, as it happened");
  events
    .command("tail")
    .summary("follow events as they are written")
    .description("follow events as they are written (Ctrl-C stops); --output json prints one JSON object per line")
    .option("--stream <id>", "only this stream (one aggregate, e.g. a tenant's stream)")
    .option("--after <position>", "start after this log position (default: the server's choice: the whole log)")
    .action(async (options: TailOptions, command: Command) => {
      const client = await runtime.client(command);
      if (!client.hasToken) throw new CliError(ExitCode.auth, "not logged in", undefined, "`dvid login --api URL ...`");
      const format = runtime.format(command);
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        const print = (event: Resource) => runtime.out(formatEventLine(event, format));
        if (await hasEventsSubscription(client)) {
          await tailGraphql(client, options, print, controller.signal, runtime);
        } else {
          await tailRest(client, options, print, controller.signal);
        }
      } finally {
        process.removeListener("SIGINT", stop);
        process.removeListener("SIGTERM", stop);
      }
    });
}

/** Whether /graphql answers and its schema has Subscription.events (assumed when introspection is off). */
async function hasEventsSubscription(client: ApiClient): Promise<boolean> {
  try {
    const answer = await client.post<{ data?: { __type?: { fields?: Array<{ name: string }> } | null }; errors?: unknown[] }>(
      "/graphql",
      { query: `{ __type(name: "Subscription") { fields { name } } }` },
    );
    if (answer?.errors?.length && !answer.data) return true;
    return Boolean(answer?.data?.__type?.fields?.some((f) => f.name === "events"));
  } catch (error) {
    if (error instanceof CliError && (error.exitCode === ExitCode.notFound || error.exitCode === ExitCode.usage)) return false;
    throw error;
  }
}

async function tailGraphql(client: ApiClient, options: TailOptions, print: (event: Resource) => void, signal: AbortSignal, runtime: Runtime): Promise<void> {
  let graphqlWs: typeof import("graphql-ws");
  let WebSocketImpl: typeof import("ws").default;
  try {
    graphqlWs = await import("graphql-ws");
    WebSocketImpl = (await import("ws")).default;
  } catch {
    throw new CliError(ExitCode.usage, "`dv events tail` needs the packages graphql-ws and ws, which this installation lacks",
      undefined, "install with `npm ci` (not --omit=dev) until they become runtime dependencies");
  }
  const token = client.token ?? "";
  const url = client.url("/graphql").replace(/^http/, "ws");
  class AuthenticatedWebSocket extends WebSocketImpl {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers: { authorization: `Bearer ${token}` } });
    }
  }
  let after = options.after;
  let attempt = 0;
  while (!signal.aborted) {
    const wsClient = graphqlWs.createClient({
      url,
      webSocketImpl: AuthenticatedWebSocket,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
      lazy: true,
    });
    const outcome = await new Promise<{ error?: unknown }>((resolve) => {
      const dispose = wsClient.subscribe<{ events: Resource }>(
        { query: EVENTS_SUBSCRIPTION, variables: { streamId: options.stream ?? null, afterPosition: after ?? null } },
        {
          next: (result) => {
            if (result.errors?.length) {
              resolve({ error: new CliError(ExitCode.server, `events subscription: ${result.errors.map((e) => e.message).join("; ")}`) });
              return;
            }
            const event = result.data?.events;
            if (!event) return;
            attempt = 0;
            after = positionOf(event) ?? after;
            print(event);
          },
          error: (error) => resolve({ error }),
          complete: () => resolve({}),
        },
      );
      signal.addEventListener("abort", () => {
        dispose();
        resolve({});
      }, { once: true });
    });
    await wsClient.dispose();
    if (signal.aborted) return;
    if (outcome.error instanceof CliError) throw outcome.error;
    const closeCode = (outcome.error as { code?: number } | undefined)?.code;
    if (closeCode === 4401 || closeCode === 4403) throw new CliError(ExitCode.auth, "the server refused the events subscription (not authorised)");
    // Dropped: resume after the last printed event, backing off up to 10 s.
    attempt++;
    runtime.err(`(events: connection lost, reconnecting in ${Math.min(2 ** attempt, 10)} s)\n`);
    await sleep(Math.min(2 ** attempt, 10) * 1000, signal);
  }
}

async function tailRest(client: ApiClient, options: TailOptions, print: (event: Resource) => void, signal: AbortSignal): Promise<void> {
  // TODO(events): poll a REST feed until the GraphQL subscription lands; see the report / cli/README.md.
  let after = options.after;
  while (!signal.aborted) {
    let body: unknown;
    try {
      body = await client.get("/v1/events", { query: { after, streamId: options.stream, limit: 500 } });
    } catch (error) {
      if (error instanceof CliError && error.exitCode === ExitCode.notFound && after === options.after) {
        throw new CliError(ExitCode.server, "this server has no event feed yet: neither the GraphQL `events` subscription nor GET /v1/events");
      }
      throw error;
    }
    const items = itemsOf(body);
    for (const event of items) {
      after = positionOf(event) ?? after;
      print(event);
    }
    if (items.length === 0) await sleep(1000, signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
