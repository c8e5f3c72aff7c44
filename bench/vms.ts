import { execFile as execFileCb, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import pg from "pg";
import { NatsLink, natsUrl } from "../adapters/nats/connection.ts";
import { deleteStreams } from "../adapters/nats/topology.ts";
import { benchNamespace } from "./relay.ts";
import { dropDatabase, freshDatabase, log, percentile, round, type BenchResult } from "./support.ts";

const execFile = promisify(execFileCb);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const DATACENTER = "benchdc";

/**
 * Issue 6: time from `POST /v1/vms` to the VM's create task succeeding
 * (running), against QEMU's own start (spawn until QMP answers, as the
 * hypervisor worker measures it and reports in the start step's output).
 * The whole platform as it runs: `dv up --no-workers` and `dv worker
 * --service hypervisor --host <id>` as processes of their own on real
 * Postgres + NATS, the VM a QEMU (tcg) booting a blank qcow2 disk (SeaBIOS
 * then idles, so guests do not compete with the control plane for the 2
 * cores). VMs are created one after another, each deleted (and its delete
 * task awaited) before the next, so every create sees the same idle system.
 *
 * Overhead = total − QEMU's start, per VM; its p50 is the figure against
 * the ≤150 ms target. It includes the disk-prepare (qemu-img create of the
 * overlay and disk image) and seed-build (genisoimage) work on the
 * hypervisor, which the breakdown reports separately. The end is the task's
 * TaskSucceeded as recorded (Postgres and this process share the clock).
 */
export async function vmBenchmarks(options: { vms?: number; warmup?: number } = {}): Promise<BenchResult[]> {
  const vms = options.vms ?? 15;
  const warmup = options.warmup ?? 2;
  const database = "dv_bench_vms";
  const url = await freshDatabase(database);
  const dir = await mkdtemp(join(tmpdir(), "dv-bench-vms-"));
  const namespace = benchNamespace("vm");
  const children: ChildProcess[] = [];
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const api = `http://127.0.0.1:${port}`;
  const secret = randomBytes(16).toString("hex");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DV_CONFIG: join(dir, "config.json"),
    DV_DATA_DIR: join(dir, "data"),
    DATABASE_URL: url,
    NATS_URL: natsUrl(),
    DV_NATS_NAMESPACE: namespace.prefix,
    DV_SECRET_KEY: randomBytes(32).toString("base64"),
    DV_VM_OBSERVE_INTERVAL_MS: "0",
  };
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    children.push(startProcess(["up", "--no-workers"], { ...env, DV_PORT: String(port), DV_BOOTSTRAP_SECRET: secret }));
    await until(async () => (await fetch(`${api}/healthz`).catch(() => null))?.ok === true, 60_000, "dv up to answer");
    await cli("dvid", ["login", "--api", api, "--bootstrap-secret", secret], env);
    const token = (await cli("dvid", ["token"], env)).trim();
    const tenantId = (JSON.parse(await cli("dv", ["tenant", "create", "bench", "--output", "json"], env)) as { id: string }).id;
    const projectId = (JSON.parse(await cli("dv", ["project", "create", "vms", "--tenant", tenantId, "--output", "json"], env)) as { id: string }).id;

    const inventory = join(dir, "inventory.yaml");
    await writeFile(
      inventory,
      `datacenters:\n  - name: ${DATACENTER}\n    racks:\n      - name: r01\n        hosts:\n          - name: hv-bench\n            serial: BENCH-HV-1\n            macs: ["52:54:00:be:00:01"]\n            role: hypervisor\n            capacity: { vcpus: 16, memoryMiB: 65536, diskGiB: 1000 }\n            sshPortRange: { first: 32000, last: 32099 }\n`,
    );
    await cli("dvce", ["inventory", "import", inventory], env);
    const hostId = (JSON.parse(await cli("dvce", ["host", "get", "hv-bench", "--datacenter", DATACENTER, "--output", "json"], env)) as { id: string }).id;
    const worker = startProcess(["worker", "--service", "hypervisor", "--datacenter", DATACENTER, "--host", hostId, "--vm-dir", join(dir, "vm")], env);
    children.push(worker);
    let workerOut = "";
    worker.stdout!.on("data", (chunk: Buffer) => (workerOut += chunk.toString()));
    await until(() => /^ready: /m.test(workerOut), 60_000, "the hypervisor worker to be ready");

    const blank = join(dir, "blank.qcow2");
    await execFile("qemu-img", ["create", "-q", "-f", "qcow2", blank, "64M"]);
    await cli("dvce", ["image", "import", "blank", "--image-version", "1", "--file", blank, "--format", "qcow2", "--os-family", "none", "--guest-init", "none"], env);

    const call = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${api}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
      return (text ? JSON.parse(text) : {}) as Record<string, unknown>;
    };
    // The task's end as recorded in its stream (polled in the database: the API's rate limit is for people, and
    // the recorded time does not depend on the poll's granularity).
    const finish = async (taskId: string): Promise<number> => {
      for (;;) {
        const { rows } = await pool.query<{ event_type: string; recorded_at: Date; data: unknown }>(
          "select event_type, recorded_at, data from eventstore.events where stream_id = $1 and event_type in ('TaskSucceeded', 'TaskFailed', 'TaskCancelled')",
          [`task-${taskId}`],
        );
        const end = rows[0];
        if (end?.event_type === "TaskSucceeded") return end.recorded_at.getTime();
        if (end) throw new Error(`task ${taskId}: ${end.event_type} ${JSON.stringify(end.data)}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };

    const totals: number[] = [];
    const qemu: number[] = [];
    const overheads: number[] = [];
    const stepTimes = new Map<string, number[]>();
    for (let i = 0; i < warmup + vms; i += 1) {
      const started = Date.now();
      const created = await call("POST", "/v1/vms", {
        name: `bench-${i}`,
        tenantId,
        projectId,
        datacenter: DATACENTER,
        resources: { vcpus: 1, memoryMiB: 64, diskGiB: 1 },
        disk: { name: `bench-${i}`, mode: "CreateIfNotExist", template: { image: { name: "blank", version: "1" }, sizeGiB: 1, storageClass: "local" } },
      });
      const taskId = String(created.taskId);
      const total = (await finish(taskId)) - started;
      const steps = await stepDurations(pool, taskId);
      const startMs = steps.startMs;
      if (i >= warmup) {
        totals.push(total);
        qemu.push(startMs);
        overheads.push(total - startMs);
        for (const [step, ms] of steps.durations) stepTimes.set(step, [...(stepTimes.get(step) ?? []), ms]);
      }
      const deleted = await call("DELETE", `/v1/vms/${String(created.vmId)}`);
      await finish(String(deleted.taskId));
    }
    const p50 = (values: readonly number[]) => round(percentile(values, 50));
    const breakdown = [...stepTimes].map(([step, values]) => `${step} ${p50(values)}`).join(", ");
    log(`vms: create → running p50 ${p50(totals)} ms (QEMU start p50 ${p50(qemu)} ms, overhead p50 ${p50(overheads)} ms); steps p50 ms: ${breakdown}`);
    return [
      { name: "VM create → running (POST /v1/vms until the task succeeded)", value: p50(totals), unit: "ms p50", target: null, note: `${vms} VMs, one at a time` },
      { name: "QEMU's own start (spawn until QMP answers, reported by the worker)", value: p50(qemu), unit: "ms p50", target: null },
      {
        name: "control plane overhead over QEMU's start (create → running − QEMU start)",
        value: p50(overheads),
        unit: "ms p50",
        target: 150,
        better: "lower",
        note: `steps p50 ms: ${breakdown}`,
      },
    ];
  } finally {
    for (const child of children.reverse()) {
      child.kill("SIGTERM");
      await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once("exit", resolve)));
    }
    await killLeftoverQemu(join(dir, "vm"));
    await pool.end();
    const link = new NatsLink({ servers: natsUrl(), name: "bench-vms-cleanup" });
    const nc = await link.ready();
    if (nc) await deleteStreams(await jetstreamManager(nc), namespace).catch(() => {});
    await link.close();
    await dropDatabase(database);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Each step's duration from the task's own events (recorded times), and the start step's reported QEMU start. */
async function stepDurations(pool: pg.Pool, taskId: string): Promise<{ durations: Map<string, number>; startMs: number }> {
  const { rows } = await pool.query<{ event_type: string; data: { step?: string; output?: { startMs?: number } }; recorded_at: Date }>(
    "select event_type, data, recorded_at from eventstore.events where stream_id = $1 order by stream_position",
    [`task-${taskId}`],
  );
  const durations = new Map<string, number>();
  const begun = new Map<string, number>();
  let startMs = 0;
  for (const row of rows) {
    const step = row.data.step;
    if (!step) continue;
    if (row.event_type === "TaskStepStarted") begun.set(step, row.recorded_at.getTime());
    if (row.event_type === "TaskStepCompleted") {
      durations.set(step, row.recorded_at.getTime() - (begun.get(step) ?? row.recorded_at.getTime()));
      if (step === "start" && typeof row.data.output?.startMs === "number") startMs = row.data.output.startMs;
    }
  }
  return { durations, startMs };
}

/** QEMU daemonizes: a bench that stopped half-way must not leave VMs (and their forwarded ports) behind. */
async function killLeftoverQemu(vmDir: string): Promise<void> {
  for (const entry of await readdir(vmDir).catch(() => [] as string[])) {
    const pid = Number((await readFile(join(vmDir, entry, "qemu.pid"), "utf8").catch(() => "")).trim());
    if (pid > 0) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
}

function startProcess(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [join(root, "cli", "bin", "dv.js"), ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
}

async function cli(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await execFile(process.execPath, [join(root, "cli", "bin", `${bin}.js`), ...args], { cwd: root, env, timeout: 60_000 });
    return stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${bin} ${args.join(" ")}: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
