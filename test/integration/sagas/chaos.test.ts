import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SHARED_NATS_URL } from "../nats/support/nats.ts";
import { createLedgerTable, ledgerSaga } from "./fixtures/ledger.ts";
import { createSagaHarness, type SagaHarness } from "./support.ts";

const TASKS = 200;
const MIN_KILLS = 12;
const WAVES = 10;
const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));

/** A child process that is restarted after every SIGKILL, like a supervisor would. */
class Supervised {
  private child: ChildProcess | null = null;
  output = "";
  starts = 0;

  constructor(
    readonly name: string,
    private readonly entry: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** Starts it; resolves when it printed "ready". */
  start(): Promise<void> {
    const child = spawn(process.execPath, ["--import", "tsx", `${FIXTURES}${this.entry}`], { env: this.env, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    this.starts += 1;
    child.stderr!.on("data", (chunk: Buffer) => (this.output = (this.output + chunk.toString()).slice(-8000)));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} did not get ready in 30 s\n${this.output}`)), 30_000);
      child.stdout!.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("ready")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        if (signal !== "SIGKILL") reject(new Error(`${this.name} exited (${code ?? signal}) before it was ready\n${this.output}`));
      });
    });
  }

  /** SIGKILL, wait for the exit. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }
}

/**
 * 200 sagas x 3 worker steps; the saga runtime and the worker are separate
 * processes, SIGKILLed at random moments (at least 12 times in all) and
 * restarted. Every task succeeds and every side effect is in the ledger
 * (which has no unique constraint) exactly once.
 */
describe("chaos: SIGKILLed saga runtime and worker", () => {
  let h: SagaHarness;
  let sagas: Supervised;
  let worker: Supervised;

  beforeAll(async () => {
    h = await createSagaHarness("chaos");
    await createLedgerTable(h.pool);
    // Each ledger request takes 1 s, so a wave of tasks is still running when the next kill comes: the runtime
    // itself no longer takes seconds per wave (it reacts to its own events at once), and a wave done before the
    // kill would test nothing.
    const env = { ...process.env, DATABASE_URL: h.database.url, NATS_URL: SHARED_NATS_URL, DV_NATS_NAMESPACE: h.namespace.prefix, ACK_WAIT_MS: "2000", WORK_DELAY_MS: "1000" };
    sagas = new Supervised("saga runtime", "saga-process.ts", env);
    worker = new Supervised("worker", "worker-process.ts", env);
    await Promise.all([sagas.start(), worker.start()]);
  });
  afterAll(async () => {
    await sagas?.kill();
    await worker?.kill();
    await h?.dispose();
  });

  it("converges: every task succeeded, every (task, step) in the ledger exactly once", { timeout: 240_000 }, async () => {
    const started = Date.now();
    const saga = ledgerSaga("test.chaos");
    const ids: string[] = [];
    const wave = async () => ids.push(...(await Promise.all(Array.from({ length: TASKS / WAVES }, () => h.createTask(saga)))));
    await wave();

    const succeeded = async () =>
      Number((await h.pool.query("select count(*)::int as n from eventstore.events where event_type = 'TaskSucceeded'")).rows[0].n);
    // Tasks arrive in waves, one per kill, so the run is still going at every one of the first WAVES kills.
    let kills = 0;
    let killsDuringRun = 0;
    const log: string[] = [];
    while (kills < MIN_KILLS || (await succeeded()) < TASKS) {
      if (Date.now() - started > 180_000) break;
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 900));
      const victim = Math.random() < 0.5 ? sagas : worker;
      const done = await succeeded();
      await victim.kill();
      kills += 1;
      if (done < TASKS) killsDuringRun += 1;
      log.push(`${((Date.now() - started) / 1000).toFixed(1)}s kill ${victim.name} (${done}/${ids.length} succeeded)`);
      if (ids.length < TASKS) await wave();
      await new Promise((r) => setTimeout(r, Math.random() * 300));
      await victim.start();
    }

    const states = await h.waitFor(ids, (t) => t.status === "succeeded" || t.status === "failed", 120_000, "every task to finish");
    const elapsed = Date.now() - started;
    console.log(`chaos: ${TASKS} tasks x 3 steps, ${kills} kills (${killsDuringRun} before the last task succeeded), ${elapsed} ms\n${log.join("\n")}`);
    expect(states.filter((s) => s.status !== "succeeded").map((s) => `${s.taskId}: ${JSON.stringify(s.failure)}`)).toEqual([]);
    expect(kills).toBeGreaterThanOrEqual(10);
    expect(killsDuringRun).toBeGreaterThanOrEqual(10);

    const { rows } = await h.pool.query<{ task_id: string; step: string; n: number }>("select task_id, step, count(*)::int as n from ledger group by 1, 2");
    expect(rows).toHaveLength(TASKS * 3);
    expect(rows.filter((r) => r.n !== 1)).toEqual([]);
    expect(new Set(rows.map((r) => r.task_id))).toEqual(new Set(ids));
  });
});
