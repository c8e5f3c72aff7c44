import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { PostgresEventStore } from "../../../adapters/eventstore/postgres/store.ts";
import { NatsLink } from "../../../adapters/nats/connection.ts";
import type { NatsNamespace } from "../../../adapters/nats/namespace.ts";
import { Relay } from "../../../adapters/nats/relay.ts";
import { ensureStreams } from "../../../adapters/nats/topology.ts";
import { createPool } from "../../../adapters/postgres/connection.ts";
import { loadStream } from "../../../commands/pipeline.ts";
import { executeTaskCommand } from "../../../commands/task/index.ts";
import { fold } from "../../../domain/shared/decider.ts";
import { taskDecider } from "../../../domain/task/decider.ts";
import { taskEventSchemas, type TaskEvent } from "../../../domain/task/events.ts";
import type { ExistingTask } from "../../../domain/task/state.ts";
import { taskStreamId } from "../../../domain/task/stream.ts";
import { sagaPlan, type TaskSaga } from "../../../sagas/runtime/types.ts";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.ts";
import { SHARED_NATS_URL, dropNamespace, testNamespace } from "../nats/support/nats.ts";

export interface SagaHarness {
  readonly database: TestDatabase;
  readonly pool: pg.Pool;
  readonly store: PostgresEventStore;
  readonly link: NatsLink;
  readonly nc: NatsConnection;
  readonly namespace: NatsNamespace;
  readonly relay: Relay;
  createTask(saga: TaskSaga<any>, options?: { taskId?: string; input?: Record<string, unknown>; deadlineMs?: number; maxAttempts?: number }): Promise<string>;
  task(taskId: string): Promise<ExistingTask>;
  events(taskId: string): Promise<TaskEvent[]>;
  waitFor(taskIds: readonly string[], done: (task: ExistingTask) => boolean, timeoutMs: number, what?: string): Promise<ExistingTask[]>;
  dispose(): Promise<void>;
}

export const USER = { kind: "user", id: "tester" } as const;

/** A fresh database, a NATS link (shared server unless url), the namespace's streams and the real relay. */
export async function createSagaHarness(label: string, options: { url?: string; namespace?: NatsNamespace } = {}): Promise<SagaHarness> {
  const database = await createTestDatabase();
  const pool = createPool(database.url, { max: 30 });
  const store = new PostgresEventStore({ pool });
  const namespace = options.namespace ?? testNamespace(label);
  const link = new NatsLink({ servers: options.url ?? SHARED_NATS_URL, name: `test-${label}`, reconnectWaitMs: 250 });
  const nc = await link.ready();
  if (!nc) throw new Error("NATS link closed before connecting");
  await ensureStreams(await jetstreamManager(nc), { namespace, duplicateWindowMs: 10 * 60_000 });
  const relay = new Relay({ store, pool, nats: link, namespace, pollIntervalMs: 200, retry: { initialMs: 100, maxMs: 1000 } });
  relay.start();

  const task = async (taskId: string): Promise<ExistingTask> => {
    const loaded = await loadStream<TaskEvent>(store, taskStreamId(taskId), taskEventSchemas);
    const state = fold(taskDecider, loaded.events);
    if (!state.exists) throw new Error(`no task ${taskId}`);
    return state;
  };
  return {
    database,
    pool,
    store,
    link,
    nc,
    namespace,
    relay,
    async createTask(saga, taskOptions = {}) {
      const taskId = taskOptions.taskId ?? `t-${uuidv7()}`;
      const now = new Date();
      await executeTaskCommand(
        store,
        {
          type: "CreateTask",
          taskId,
          kind: saga.kind,
          title: `test ${saga.kind}`,
          resource: { type: "test", id: taskId },
          scope: { tenantId: "tenant-test", projectId: null, environmentId: null },
          steps: sagaPlan(saga),
          deadline: new Date(now.getTime() + (taskOptions.deadlineMs ?? 3_600_000)).toISOString(),
          maxAttempts: taskOptions.maxAttempts ?? 5,
          input: taskOptions.input ?? {},
          at: now.toISOString(),
        },
        { actor: USER, correlationId: `create-${taskId}`, scope: { tenantId: "tenant-test" } },
      );
      return taskId;
    },
    task,
    async events(taskId) {
      return (await loadStream<TaskEvent>(store, taskStreamId(taskId), taskEventSchemas)).events;
    },
    async waitFor(taskIds, done, timeoutMs, what = "tasks") {
      const deadline = Date.now() + timeoutMs;
      let states: ExistingTask[] = [];
      for (;;) {
        states = await Promise.all(taskIds.map(task));
        if (states.every(done)) return states;
        if (Date.now() > deadline) {
          const pending = states.filter((s) => !done(s));
          const summary = pending.slice(0, 5).map((s) => `${s.taskId}: ${s.status} ${JSON.stringify(s.blocked ?? s.failure ?? s.steps.map((x) => `${x.name}=${x.status}/${x.request?.requestId ?? "-"}${x.request?.outstanding ? "*" : ""}`))}`);
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${pending.length} of ${taskIds.length} not there\n${summary.join("\n")}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
    async dispose() {
      await relay.stop();
      await dropNamespace(nc, namespace).catch(() => {});
      await link.close();
      await store.close();
      await pool.end();
      await database.drop();
    },
  };
}
