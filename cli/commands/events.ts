import type { Command } from "commander";
import { CliError, ExitCode, usageError } from "../core/errors.ts";
import type { ApiClient } from "../core/http.ts";
import { cell } from "../core/output.ts";
import { itemsOf, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";

/**
 * `dv events tail`: follow the event log as it is written.
 *
 * Preferred feed: the GraphQL subscription `events(streamId, afterPosition)`
 * over graphql-transport-ws at ws(s)://API/graphql. Which fields an event has
 * is read from the schema (introspection), so the CLI asks for every scalar
 * field the server offers; without introspection it asks for DEFAULT_FIELDS.
 * When the server has no such subscription, the fallback polls
 * `GET /v1/events?after=&streamId=`. Either way the tail resumes after the
 * last event it printed when the connection drops.
 */

/** The position before the first event of the log. */
export const START_POSITION = "0.0";

export const DEFAULT_FIELDS = ["id", "type", "streamId", "streamPosition", "position", "occurredAt"] as const;

export interface TailOptions {
  stream?: string;
  after?: string;
}

export function subscriptionQuery(fields: readonly string[]): string {
  return `subscription Tail($streamId: String, $afterPosition: String) {
  events(streamId: $streamId, afterPosition: $afterPosition) { ${fields.join(" ")} }
}`;
}

/** One event: `POSITION  OCCURRED-AT  STREAM  TYPE` (table), or the event as one JSON line (json). */
export function formatEventLine(event: Resource, format: "table" | "json"): string {
  if (format === "json") return `${JSON.stringify(event)}\n`;
  return `${cell(positionOf(event) ?? event.globalPosition)}  ${cell(event.occurredAt)}  ${cell(event.streamId)}  ${cell(event.type)}\n`;
}

/** The log position to resume after: `position` ("<transactionId>.<globalPosition>"), else built from its parts. */
export function positionOf(event: Resource): string | undefined {
  if (typeof event.position === "string" && event.position) return event.position;
  if (event.transactionId !== undefined && event.globalPosition !== undefined) return `${String(event.transactionId)}.${String(event.globalPosition)}`;
  return undefined;
}

export function registerEventCommands(program: Command, runtime: Runtime): void {
  const events = program.command("events").description("the event log: every change, as it happened");
  events
    .command("tail")
    .summary("follow events as they are written")
    .description("follow events as they are written (Ctrl-C stops); --output json prints one JSON object per line")
    .option("--stream <id>", "only this stream (one aggregate, e.g. tenant-<id>)")
    .option("--after <position>", "start after this log position (an event's `position`, or an X-Dv-Position header); default: from now on")
    .option("--from-start", "replay the whole log first, then follow")
    .action(async (options: TailOptions & { fromStart?: boolean }, command: Command) => {
      if (options.fromStart && options.after !== undefined) throw usageError("--from-start and --after exclude each other");
      const client = await runtime.client(command);
      if (!client.hasToken) throw new CliError(ExitCode.auth, "not logged in", undefined, "`dvid login --api URL ...`");
      const format = runtime.format(command);
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        const from = options.fromStart ? { ...options, after: START_POSITION } : options;
        await tailEvents(client, from, (event) => runtime.out(formatEventLine(event, format)), controller.signal, (line) => runtime.err(`${line}\n`));
      } finally {
        process.removeListener("SIGINT", stop);
        process.removeListener("SIGTERM", stop);
      }
    });
}

/** Follows events until `signal` aborts; throws when there is no feed or it is refused. */
export async function tailEvents(
  client: ApiClient,
  options: TailOptions,
  print: (event: Resource) => void,
  signal: AbortSignal,
  note: (line: string) => void,
): Promise<void> {
  const fields = await subscriptionFields(client);
  if (fields) await tailGraphql(client, options, fields, print, signal, note);
  else await tailRest(client, options, print, signal);
}

interface IntrospectedType {
  name?: string | null;
  kind?: string;
  ofType?: IntrospectedType | null;
  fields?: Array<{ name: string; type: IntrospectedType }> | null;
}

function namedType(type: IntrospectedType | null | undefined): IntrospectedType | undefined {
  let current = type ?? undefined;
  while (current && (current.kind === "NON_NULL" || current.kind === "LIST")) current = current.ofType ?? undefined;
  return current;
}

const TYPE_REF = "kind name ofType { kind name ofType { kind name ofType { kind name } } }";

/**
 * The fields to ask for when /graphql has Subscription.events: its scalar
 * fields (or DEFAULT_FIELDS when introspection is off). Undefined when there
 * is no GraphQL endpoint or no such subscription.
 */
async function subscriptionFields(client: ApiClient): Promise<readonly string[] | undefined> {
  type Answer = { data?: { __type?: IntrospectedType | null } | null; errors?: unknown[] };
  let answer: Answer;
  try {
    answer = await client.post<Answer>("/graphql", { query: `{ __type(name: "Subscription") { fields { name type { ${TYPE_REF} } } } }` });
  } catch (error) {
    if (error instanceof CliError && (error.exitCode === ExitCode.notFound || error.exitCode === ExitCode.usage)) return undefined;
    throw error;
  }
  if (!answer?.data) return answer?.errors?.length ? DEFAULT_FIELDS : undefined; // introspection refused: assume the documented shape
  const events = answer.data.__type?.fields?.find((f) => f.name === "events");
  if (!events) return undefined;
  const typeName = namedType(events.type)?.name;
  if (!typeName) return DEFAULT_FIELDS;
  const eventType = await client.post<Answer>("/graphql", { query: `{ __type(name: ${JSON.stringify(typeName)}) { fields { name type { ${TYPE_REF} } } } }` });
  const scalars = (eventType?.data?.__type?.fields ?? [])
    .filter((f) => ["SCALAR", "ENUM"].includes(namedType(f.type)?.kind ?? ""))
    .map((f) => f.name);
  return scalars.length ? scalars : DEFAULT_FIELDS;
}

async function tailGraphql(
  client: ApiClient,
  options: TailOptions,
  fields: readonly string[],
  print: (event: Resource) => void,
  signal: AbortSignal,
  note: (line: string) => void,
): Promise<void> {
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
  // The token goes in the upgrade request's Authorization header and in connectionParams: servers read one or the other.
  class AuthenticatedWebSocket extends WebSocketImpl {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers: { authorization: `Bearer ${token}` } });
    }
  }
  const query = subscriptionQuery(fields);
  let after = options.after;
  let failures = 0;
  let everConnected = false;
  while (!signal.aborted) {
    const wsClient = graphqlWs.createClient({
      url,
      webSocketImpl: AuthenticatedWebSocket,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
      lazy: true,
      on: { connected: () => void (everConnected = true) },
    });
    const outcome = await new Promise<{ error?: unknown }>((resolve) => {
      // Ctrl-C: drop the socket at once rather than wait for a close handshake.
      const onAbort = () => {
        wsClient.terminate();
        resolve({});
      };
      signal.addEventListener("abort", onAbort, { once: true });
      wsClient.subscribe<{ events: Resource }>(
        { query, variables: { streamId: options.stream ?? null, afterPosition: after ?? null } },
        {
          next: (result) => {
            if (result.errors?.length) {
              resolve({ error: graphqlErrors(result.errors as GraphqlError[]) });
              return;
            }
            const event = result.data?.events;
            if (!event) return;
            failures = 0;
            after = positionOf(event) ?? after;
            print(event);
          },
          error: (error) => resolve({ error }),
          complete: () => resolve({}),
        },
      );
    });
    if (signal.aborted) return;
    await wsClient.dispose();
    if (outcome.error instanceof CliError) throw outcome.error;
    if (Array.isArray(outcome.error)) throw graphqlErrors(outcome.error as GraphqlError[]);
    const closeCode = (outcome.error as { code?: number } | undefined)?.code;
    if (closeCode === 4401 || closeCode === 4403) throw new CliError(ExitCode.auth, "the server refused the events subscription (not authorised)");
    if (!everConnected) {
      const reason = (outcome.error as { reason?: string; message?: string } | undefined)?.reason || (outcome.error as Error | undefined)?.message || `close code ${closeCode ?? "unknown"}`;
      throw new CliError(ExitCode.server, `cannot open the events subscription at ${url}: ${reason}`);
    }
    // Dropped (or completed by the server): resume after the last printed event, backing off up to 10 s.
    failures++;
    const seconds = Math.min(2 ** (failures - 1), 10);
    note(`(events: connection lost; reconnecting in ${seconds} s)`);
    await sleep(seconds * 1000, signal);
  }
}

interface GraphqlError {
  message?: string;
  extensions?: { code?: string };
}

/** GraphQL error codes as the CLI's exit codes. */
const GRAPHQL_EXIT: Record<string, ExitCode> = {
  NOT_FOUND: ExitCode.notFound,
  UNAUTHENTICATED: ExitCode.auth,
  FORBIDDEN: ExitCode.auth,
  BAD_USER_INPUT: ExitCode.usage,
  BAD_REQUEST: ExitCode.usage,
  GRAPHQL_VALIDATION_FAILED: ExitCode.usage,
  GRAPHQL_PARSE_FAILED: ExitCode.usage,
  QUERY_TOO_DEEP: ExitCode.usage,
  QUERY_TOO_COSTLY: ExitCode.usage,
};

export function graphqlErrors(errors: readonly GraphqlError[]): CliError {
  const code = errors.map((e) => e.extensions?.code).find((c): c is string => typeof c === "string" && c in GRAPHQL_EXIT);
  const message = errors.map((e) => e.message ?? "error").join("; ");
  return new CliError(code ? GRAPHQL_EXIT[code]! : ExitCode.server, `events subscription refused: ${message}`);
}

async function tailRest(client: ApiClient, options: TailOptions, print: (event: Resource) => void, signal: AbortSignal): Promise<void> {
  let after = options.after;
  let first = true;
  while (!signal.aborted) {
    let body: unknown;
    try {
      body = await client.get("/v1/events", { query: { after, streamId: options.stream, limit: 200 } });
    } catch (error) {
      if (first && error instanceof CliError && error.exitCode === ExitCode.notFound) {
        throw new CliError(ExitCode.server, "this server has no event feed yet: neither the GraphQL `events` subscription nor GET /v1/events");
      }
      throw error;
    }
    first = false;
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
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
