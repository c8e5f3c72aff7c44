import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { PostgresEventStore } from "../adapters/eventstore/postgres/store.ts";
import { NatsLink, natsUrl } from "../adapters/nats/connection.ts";
import { Relay } from "../adapters/nats/relay.ts";
import { deleteStreams, ensureStreams } from "../adapters/nats/topology.ts";
import { createPool } from "../adapters/postgres/connection.ts";
import { startSagaRuntime, type SagaRuntimeHandle } from "../cli/up/sagas.ts";
import { executeTaskCommand } from "../commands/task/index.ts";
import { taskStreamId } from "../domain/task/stream.ts";
import { defineSaga, sagaPlan } from "../sagas/runtime/types.ts";
import { benchNamespace } from "./relay.ts";
import { dropDatabase, freshDatabase, log, percentile, round, type BenchResult } from "./support.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const actor = { kind: "user", id: "bench" } as const;
const DATACENTER = "dc1";

/** Two work steps, each a `noop.ping` request answered by the built-in noop worker (adapters/workers/registry.ts). */
const benchSaga = defineSaga({
  kind: "bench.two-step",
  steps: {
    one: { title: "ping one", work: () => ({ service: "noop", action: "ping", datacenter: DATACENTER, payload: { step: "one" } }) },
    two: { title: "ping two", work: () => ({ service: "noop", action: "ping", datacenter: DATACENTER, payload: { step: "two" } }) },
  },
});

/** `dv worker --service noop` in a process of its own, as production runs workers; resolves when it printed "ready". */
function startWorkerProcess(namespace: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [join(root, "cli", "bin", "dv.js"), "worker", "--service", "noop", "--datacenter", DATACENTER, "--namespace", namespace, "--concurrency", "64"],
    { cwd: root, env: { ...process.env, NATS_URL: natsUrl() }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stderr!.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL"); // never leave it behind
      reject(new Error(`dv worker did not get ready in 30 s\n${output}`));
    }, 30_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
      if (output.includes("ready:")) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`dv worker exited (${code ?? signal}) before it was ready\n${output}`));
    });
  });
}

async function stopProcess(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

/** CPU time (user + system) a process used so far, in ms; 0 when it is gone. Linux /proc, USER_HZ = 100. */
async function processCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  if (!stat) return 0;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Busy and total CPU time of the whole box so far, in ms (other tenants' work included). */
async function boxCpuMs(): Promise<{ busy: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0]!;
  const ticks = line.split(/\s+/).slice(1).map(Number);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - idle) * 10, total: total * 10 };
}

/** Where the time goes: the mean and median gap before each event of a task, by the event's type (recorded_at, server clock). */
async function hopGaps(pool: pg.Pool, prefix: string): Promise<string> {
  const { rows } = await pool.query<{ event_type: string; mean_ms: number; p50_ms: number }>(
    `select event_type,
            round(avg(gap)::numeric, 1)::float8 as mean_ms,
            round(percentile_cont(0.5) within group (order by gap)::numeric, 1)::float8 as p50_ms
       from (select event_type, stream_position, extract(epoch from recorded_at - lag(recorded_at) over (partition by stream_id order by stream_position)) * 1000 as gap
               from eventstore.events where stream_id like $1) g
      where gap is not null group by event_type order by min(stream_position)`,
    [`${taskStreamId(prefix)}%`],
  );
  return rows.map((h) => `${h.event_type} ${h.mean_ms}/${h.p50_ms}`).join(", ");
}

/**
 * `sagas` two-step sagas from CreateTask to TaskSucceeded, everything real:
 * the relay and the saga runtime in this process (as `dv up` runs them), the
 * noop worker in a second process (`dv worker`), Postgres and NATS JetStream.
 * Throughput is first TaskCreated to last TaskSucceeded (both recorded_at,
 * the server's clock); a task's duration is its TaskCreated to its
 * TaskSucceeded.
 */
export async function sagaBenchmarks(options: { sagas: number; creators?: number; solo?: number }): Promise<BenchResult[]> {
  const database = "dv_bench_sagas";
  const url = await freshDatabase(database);
  const pool = createPool(url, { max: 30 });
  const store = new PostgresEventStore({ pool });
  const namespace = benchNamespace("sagas");
  const link = new NatsLink({ servers: natsUrl(), name: "bench-sagas" });
  const errors: string[] = [];
  const onError = (error: unknown, context: string) => {
    if (errors.length < 20) errors.push(`${context}: ${error instanceof Error ? error.message : String(error)}`);
  };
  let relay: Relay | null = null;
  let runtime: SagaRuntimeHandle | null = null;
  let worker: ChildProcess | null = null;
  const results: BenchResult[] = [];
  try {
    const nc = await link.ready();
    if (!nc) throw new Error("NATS link closed before connecting");
    await ensureStreams(await jetstreamManager(nc), { namespace });
    relay = new Relay({ store, pool, nats: link, namespace, onError: (error) => onError(error, "relay") });
    relay.start();
    runtime = startSagaRuntime({ store, pool, nats: link, namespace, sagas: [benchSaga], onError });
    await runtime.started;
    worker = await startWorkerProcess(namespace.prefix);

    // Transactions committed and rows inserted in this database (pg_stat_database; each query is its own snapshot).
    const stats = async () =>
      (await pool.query<{ commits: string; inserted: string }>("select xact_commit::text as commits, tup_inserted::text as inserted from pg_stat_database where datname = current_database()")).rows[0]!;
    const createTask = async (taskId: string) => {
      const now = new Date();
      await executeTaskCommand(
        store,
        {
          type: "CreateTask",
          taskId,
          kind: benchSaga.kind,
          title: `bench saga ${taskId}`,
          resource: { type: "bench", id: taskId },
          scope: { tenantId: "tenant-bench", projectId: null, environmentId: null },
          steps: sagaPlan(benchSaga),
          deadline: new Date(now.getTime() + 3_600_000).toISOString(),
          maxAttempts: 3,
          input: {},
          at: now.toISOString(),
        },
        { actor, correlationId: `create-${taskId}`, scope: { tenantId: "tenant-bench" } },
      );
    };
    const succeededCount = async (prefix: string) =>
      (
        await pool.query<{ done: number; failed: number }>(
          `select count(*) filter (where event_type = 'TaskSucceeded')::int as done,
                  count(*) filter (where event_type in ('TaskFailed', 'TaskBlocked'))::int as failed
             from eventstore.events where stream_id like $1 and event_type in ('TaskSucceeded', 'TaskFailed', 'TaskBlocked')`,
          [`${taskStreamId(prefix)}%`],
        )
      ).rows[0]!;
    const waitFor = async (prefix: string, count: number, timeoutMs: number, pollMs: number) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { done, failed } = await succeededCount(prefix);
        if (failed > 0) throw new Error(`sagas: ${failed} tasks failed or blocked\n${errors.join("\n")}`);
        if (done >= count) return;
        if (Date.now() > deadline) throw new Error(`sagas: only ${done} of ${count} succeeded in time\n${errors.join("\n")}`);
        await new Promise((resolve) => setTimeout(resolve, pollMs));
      }
    };
    const durationsOf = async (prefix: string) =>
      (
        await pool.query<{ created: Date; succeeded: Date }>(
          `select min(recorded_at) filter (where event_type = 'TaskCreated') as created,
                  min(recorded_at) filter (where event_type = 'TaskSucceeded') as succeeded
             from eventstore.events where stream_id like $1 group by stream_id`,
          [`${taskStreamId(prefix)}%`],
        )
      ).rows;

    // One saga at a time first: the latency of the chain with nothing queued (also warms the consumers up).
    const solo = options.solo ?? 20;
    log(`sagas: ${solo} sagas one at a time`);
    for (let n = 0; n < solo; n++) {
      await createTask(`bench-solo-${uuidv7()}`);
      await waitFor("bench-solo-", n + 1, 30_000, 5);
    }
    const soloDurations = (await durationsOf("bench-solo-")).map((t) => t.succeeded.getTime() - t.created.getTime());
    const soloHops = await hopGaps(pool, "bench-solo-");
    log(`sagas: alone p50 ${percentile(soloDurations, 0.5)} ms; gap before each task event (mean / p50 ms): ${soloHops}`);

    // Backends flush their statistics within 10 s when idle (PGSTAT_IDLE_INTERVAL): wait, so the counts before and after are whole.
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    const before = await stats();
    const cpuBefore = { node: process.cpuUsage(), worker: await processCpuMs(worker.pid!), box: await boxCpuMs() };
    log(`sagas: ${options.sagas} two-step sagas at once (relay + runtime here, noop worker in a second process)`);
    const creators = options.creators ?? 16;
    let next = 0;
    const startedAt = Date.now();
    await Promise.all(
      Array.from({ length: creators }, async () => {
        for (let n = next++; n < options.sagas; n = next++) await createTask(`bench-load-${uuidv7()}`);
      }),
    );
    log(`sagas: ${options.sagas} created in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);

    await waitFor("bench-load-", options.sagas, Math.max(120_000, options.sagas * 200), 100);
    const nodeCpu = process.cpuUsage(cpuBefore.node);
    const workerCpu = (await processCpuMs(worker.pid!)) - cpuBefore.worker;
    const box = await boxCpuMs();
    // Backends opened for the load (idle ones closed during the wait before it) and still connected: roughly Postgres's share.
    const { rows: backends } = await pool.query<{ pid: number }>("select pid from pg_stat_activity where datname = current_database()");
    const postgresCpu = (await Promise.all(backends.map((b) => processCpuMs(b.pid)))).reduce((a, b) => a + b, 0);
    const tasks = await durationsOf("bench-load-");
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    const after = await stats();
    const durations = tasks.map((t) => t.succeeded.getTime() - t.created.getTime());
    const first = Math.min(...tasks.map((t) => t.created.getTime()));
    const last = Math.max(...tasks.map((t) => t.succeeded.getTime()));
    const seconds = (last - first) / 1000;
    const events = Number((await pool.query("select count(*) from eventstore.events where stream_id like $1", [`${taskStreamId("bench-load-")}%`])).rows[0].count);

    const hops = await hopGaps(pool, "bench-load-");
    log(
      `sagas: ${tasks.length} in ${seconds.toFixed(2)} s; ${(events / tasks.length).toFixed(1)} events, ` +
        `${((Number(after.commits) - Number(before.commits)) / tasks.length).toFixed(1)} Postgres transactions and ` +
        `${((Number(after.inserted) - Number(before.inserted)) / tasks.length).toFixed(1)} inserted rows per saga; ` +
        `gap before each task event (mean / p50 ms): ${hops}` +
        `; CPU per saga: ${((nodeCpu.user + nodeCpu.system) / 1000 / tasks.length).toFixed(2)} ms relay + runtime + creators (this process), ` +
        `${(workerCpu / tasks.length).toFixed(2)} ms worker process, ~${(postgresCpu / tasks.length).toFixed(2)} ms Postgres backends; ` +
        `box ${Math.round((100 * (box.busy - cpuBefore.box.busy)) / Math.max(1, box.total - cpuBefore.box.total))} % busy (all tenants)` +
        (errors.length ? `; ${errors.length} errors, first: ${errors[0]}` : ""),
    );
    results.push({ name: `sagas end to end, 2 work steps (${tasks.length.toLocaleString("en")} sagas)`, value: round(tasks.length / seconds), unit: "sagas/s", target: 1_000, better: "higher" });
    results.push({ name: "saga task duration alone p50 (one saga at a time)", value: Math.round(percentile(soloDurations, 0.5)), unit: "ms", target: null });
    results.push({ name: "saga task duration p50 (created -> succeeded)", value: Math.round(percentile(durations, 0.5)), unit: "ms", target: null });
    results.push({ name: "saga task duration p99 (created -> succeeded)", value: Math.round(percentile(durations, 0.99)), unit: "ms", target: null });
  } finally {
    await stopProcess(worker);
    await runtime?.stop();
    await relay?.stop();
    const nc = link.connection;
    if (nc) await deleteStreams(await jetstreamManager(nc), namespace).catch((error: unknown) => log(`sagas: could not delete ${namespace.prefix}'s streams: ${String(error)}`));
    await link.close();
    await store.close();
    await pool.end();
    await dropDatabase(database);
  }
  return results;
}
