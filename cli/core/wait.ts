import { CliError, ExitCode } from "./errors.ts";
import type { ApiClient } from "./http.ts";
import type { Resource } from "./resources.ts";

/**
 * Follows a task until it ends, printing its progress, for `dv task watch`
 * and every command's `--wait`.
 *
 * Feed: the GraphQL subscription `taskUpdated(id, afterPosition)` over
 * graphql-transport-ws, which pushes the task as the read model shows it
 * after each of its events. Chosen over long-polling REST because REST has
 * no "wait for the next change of this task" (`?minPosition` waits for a
 * position you already know), so polling would either lag or hammer the API.
 * Robustness: the task is first read with GET /v1/tasks/{id} (so a task that
 * already ended returns at once, and its `position` is where the
 * subscription resumes); after a dropped connection the task is read again
 * and followed from its new position, so nothing is missed or printed twice.
 * When the server has no GraphQL endpoint (or the ws packages are missing),
 * it polls GET /v1/tasks/{id} every `pollMs` instead.
 *
 * Exit codes (cli/README.md): 0 succeeded, 6 failed, 7 cancelled; errors
 * reaching the API keep their usual codes (2 not found, 4 auth, 5 server).
 */
export const TaskExitCode = { succeeded: ExitCode.ok, failed: 6, cancelled: 7 } as const;

export type TaskOutcome = "succeeded" | "failed" | "cancelled";

export interface WaitOptions {
  /** A progress line for people (stderr in the commands). */
  readonly note?: (line: string) => void;
  /** Every new state of the task (e.g. JSON Lines on stdout). */
  readonly onUpdate?: (task: Resource) => void;
  readonly signal?: AbortSignal;
  /** Polling interval when there is no subscription (default 1000 ms). */
  readonly pollMs?: number;
  /** Force polling (tests, proxies without WebSocket). */
  readonly poll?: boolean;
  /**
   * The task is created asynchronously (by a saga reacting to the write that
   * asked for it): a 404 means "not yet" for this long (ms) before it means
   * "not found". Default 0.
   */
  readonly appearWithinMs?: number;
}

export interface WaitResult {
  /** The task as last seen (REST shape: lowercase statuses). */
  readonly task: Resource;
  /** undefined when stopped by the signal before the task ended. */
  readonly outcome: TaskOutcome | undefined;
  /** 0, 6 or 7 (see TaskExitCode); 130 when interrupted. */
  readonly exitCode: number;
  /** "failed in step x: code: reason" / "cancelled: reason" / "" */
  readonly reason: string;
}

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

const TASK_SELECTION = `taskId status currentStep position cancellationRequested cancellationReason
  steps { name title status attempts percent message lastError { code message } retryAt }
  blocked { step dependency kind reason since } failure { step code reason }`;
export const TASK_UPDATED_QUERY = `subscription WatchTask($id: String!, $afterPosition: String) {
  taskUpdated(id: $id, afterPosition: $afterPosition) { ${TASK_SELECTION} }
}`;

/** Follows the task until it succeeds, fails or is cancelled (or `signal` aborts). */
export async function waitForTask(client: ApiClient, taskId: string, options: WaitOptions = {}): Promise<WaitResult> {
  const progress = new ProgressPrinter(options.note ?? (() => undefined));
  let task = await firstSight(client, taskId, options);
  const seen = (next: Resource) => {
    task = next;
    progress.update(next);
    options.onUpdate?.(next);
  };
  seen(task);
  let usePolling = options.poll ?? false;
  let failures = 0;
  while (!isTerminal(task) && !options.signal?.aborted) {
    if (!usePolling) {
      const outcome = await followSubscription(client, taskId, String(task.position ?? ""), seen, isTerminal, options.signal);
      if (outcome === "unavailable") usePolling = true;
      else if (outcome === "dropped") {
        failures++;
        await sleep(Math.min(250 * 2 ** (failures - 1), 5_000), options.signal);
        if (!options.signal?.aborted) seen(await getTask(client, taskId));
      }
      continue;
    }
    await sleep(options.pollMs ?? 1_000, options.signal);
    if (options.signal?.aborted) break;
    const next = await getTask(client, taskId);
    if (next.position !== task.position) seen(next);
  }
  return result(task, options.signal);
}

function result(task: Resource, signal: AbortSignal | undefined): WaitResult {
  const status = String(task.status);
  if (!isTerminal(task)) return { task, outcome: undefined, exitCode: signal?.aborted ? 130 : ExitCode.server, reason: "" };
  const outcome = status as TaskOutcome;
  return { task, outcome, exitCode: TaskExitCode[outcome], reason: outcomeReason(task) };
}

/** Why a finished task did not succeed, in one line ("" when it succeeded). */
export function outcomeReason(task: Resource): string {
  const status = String(task.status);
  if (status === "failed") {
    const failure = (task.failure ?? {}) as { step?: string | null; code?: string; reason?: string };
    return `failed${failure.step ? ` in step ${failure.step}` : ""}: ${failure.code ?? "error"}: ${failure.reason ?? "no reason given"}`;
  }
  if (status === "cancelled") return `cancelled: ${String(task.cancellationReason ?? "no reason given")}`;
  return "";
}

function isTerminal(task: Resource): boolean {
  return TERMINAL.has(String(task.status));
}

async function firstSight(client: ApiClient, taskId: string, options: WaitOptions): Promise<Resource> {
  const deadline = Date.now() + (options.appearWithinMs ?? 0);
  let told = false;
  for (;;) {
    try {
      return await getTask(client, taskId);
    } catch (error) {
      const notYet = error instanceof CliError && error.exitCode === ExitCode.notFound && Date.now() < deadline && !options.signal?.aborted;
      if (!notYet) throw error;
      if (!told) options.note?.(`waiting for task ${taskId} to be created`);
      told = true;
      await sleep(Math.min(options.pollMs ?? 1_000, 250), options.signal);
    }
  }
}

async function getTask(client: ApiClient, taskId: string): Promise<Resource> {
  return client.get<Resource>(`/v1/tasks/${encodeURIComponent(taskId)}`);
}

/** GraphQL enum values (RUNNING) as REST's (running), so both feeds look alike. */
export function normaliseTask(task: Resource): Resource {
  const lower = (value: unknown) => (typeof value === "string" ? value.toLowerCase() : value);
  const steps = Array.isArray(task.steps) ? (task.steps as Resource[]).map((s) => ({ ...s, status: lower(s.status) })) : task.steps;
  const blocked = task.blocked && typeof task.blocked === "object" ? { ...(task.blocked as Resource), kind: lower((task.blocked as Resource).kind) } : task.blocked;
  const id = task.taskId ?? task.id;
  return { ...task, id, status: lower(task.status), steps, blocked };
}

/**
 * One subscription session: "ended" (the task ended, or the signal fired),
 * "dropped" (connection lost: read the task again and resubscribe), or
 * "unavailable" (no GraphQL/WebSocket here: poll instead). Refusals
 * (NOT_FOUND, auth) throw.
 */
async function followSubscription(
  client: ApiClient,
  taskId: string,
  afterPosition: string,
  seen: (task: Resource) => void,
  done: (task: Resource) => boolean,
  signal: AbortSignal | undefined,
): Promise<"ended" | "dropped" | "unavailable"> {
  let graphqlWs: typeof import("graphql-ws");
  let WebSocketImpl: typeof import("ws").default;
  try {
    graphqlWs = await import("graphql-ws");
    WebSocketImpl = (await import("ws")).default;
  } catch {
    return "unavailable";
  }
  const token = client.token ?? "";
  class AuthenticatedWebSocket extends WebSocketImpl {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    }
  }
  let connected = false;
  const wsClient = graphqlWs.createClient({
    url: client.url("/graphql").replace(/^http/, "ws"),
    webSocketImpl: AuthenticatedWebSocket,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    retryAttempts: 0,
    lazy: true,
    on: { connected: () => void (connected = true) },
  });
  try {
    return await new Promise<"ended" | "dropped" | "unavailable">((resolve, reject) => {
      const onAbort = () => resolve("ended");
      if (signal?.aborted) return resolve("ended");
      signal?.addEventListener("abort", onAbort, { once: true });
      wsClient.subscribe<{ taskUpdated: Resource }>(
        { query: TASK_UPDATED_QUERY, variables: { id: taskId, afterPosition: afterPosition || null } },
        {
          next: (message) => {
            if (message.errors?.length) {
              const errors = message.errors as Array<{ message?: string; extensions?: { code?: string } }>;
              const code = errors.map((e) => e.extensions?.code).find(Boolean);
              const text = errors.map((e) => e.message ?? "error").join("; ");
              if (code === "NOT_FOUND") return reject(new CliError(ExitCode.notFound, `task ${taskId} does not exist`));
              if (code === "UNAUTHENTICATED" || code === "FORBIDDEN") return reject(new CliError(ExitCode.auth, `cannot follow task ${taskId}: ${text}`));
              if (code === "GRAPHQL_VALIDATION_FAILED") return resolve("unavailable"); // an older server without taskUpdated
              return resolve("dropped");
            }
            const task = message.data?.taskUpdated;
            if (!task) return;
            const normalised = normaliseTask(task);
            seen(normalised);
            if (done(normalised)) resolve("ended");
          },
          error: (error) => {
            const code = (error as { code?: number })?.code;
            if (code === 4401 || code === 4403) return reject(new CliError(ExitCode.auth, `the server refused to let you follow task ${taskId}`));
            resolve(connected ? "dropped" : "unavailable");
          },
          complete: () => resolve("dropped"),
        },
      );
    });
  } finally {
    wsClient.terminate();
    await wsClient.dispose();
  }
}

/**
 * Prints what changed since the last state, one line each:
 *   [2/3] create-prod: running
 *   [2/3] create-prod: 40% copying
 *   [2/3] create-prod: attempt 1 failed (worker_error: no route); retry at 12:00:05
 *   blocked on worker:sentral/dc1 (hard): no heartbeat since 11:59:00
 *   unblocked
 *   cancellation requested: not needed
 *   succeeded | failed in step x: code: reason | cancelled: reason
 */
export class ProgressPrinter {
  private last: Resource | undefined;
  constructor(private readonly note: (line: string) => void) {}

  update(task: Resource): void {
    for (const line of progressLines(this.last, task)) this.note(line);
    this.last = task;
  }
}

interface StepLike {
  name: string;
  title?: string;
  status: string;
  attempts?: number;
  percent?: number;
  message?: string;
  lastError?: { code: string; message: string } | null;
  retryAt?: string | null;
}

export function progressLines(previous: Resource | undefined, task: Resource): string[] {
  const lines: string[] = [];
  const steps = (Array.isArray(task.steps) ? task.steps : []) as StepLike[];
  const before = new Map(((Array.isArray(previous?.steps) ? previous!.steps : []) as StepLike[]).map((s) => [s.name, s]));
  if (!previous) lines.push(`task ${String(task.id ?? task.taskId)}: ${String(task.title ?? task.kind ?? "")} (${String(task.status)})`.replace(" ()", ""));
  steps.forEach((step, index) => {
    const prefix = `[${index + 1}/${steps.length}] ${step.name}`;
    const old = before.get(step.name);
    if (step.status !== (old?.status ?? "pending") && step.status !== "pending") {
      lines.push(`${prefix}: ${step.status === "completed" ? "done" : step.status === "running" ? "running …" : step.status}`);
    }
    if (step.status === "running" && (step.percent !== (old?.percent ?? 0) || (step.message ?? "") !== (old?.message ?? "")) && (step.percent || step.message)) {
      lines.push(`${prefix}: ${step.percent ?? 0}%${step.message ? ` ${step.message}` : ""}`);
    }
    if (step.lastError && JSON.stringify(step.lastError) !== JSON.stringify(old?.lastError ?? null) && step.status === "running") {
      lines.push(`${prefix}: attempt ${step.attempts ?? "?"} failed (${step.lastError.code}: ${step.lastError.message})${step.retryAt ? `; retrying at ${step.retryAt}` : ""}`);
    }
  });
  const blocked = task.blocked as { dependency: string; kind: string; reason: string; since: string } | null | undefined;
  const wasBlocked = previous?.blocked as typeof blocked;
  if (blocked && JSON.stringify(blocked) !== JSON.stringify(wasBlocked ?? null)) {
    lines.push(`blocked on ${blocked.dependency} (${blocked.kind}) since ${blocked.since}: ${blocked.reason}`);
  } else if (!blocked && wasBlocked && !TERMINAL.has(String(task.status))) {
    lines.push(`unblocked: ${wasBlocked.dependency} is back`);
  }
  if (task.cancellationRequested && !previous?.cancellationRequested && task.status !== "cancelled") {
    lines.push(`cancellation requested: ${String(task.cancellationReason ?? "")}`);
  }
  if (task.status !== previous?.status && TERMINAL.has(String(task.status))) {
    lines.push(task.status === "succeeded" ? "succeeded" : outcomeReason(task));
  }
  return lines;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
