import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPosition } from "../../../adapters/eventstore/position.ts";
import { readCheckpoint, positionOf } from "../../../projections/checkpoints.ts";
import { ProjectionRunner } from "../../../projections/runner.ts";
import { probeProjection } from "./fixtures/probe.ts";
import { appendMany, createHarness, until, type ProjectionHarness } from "./support.ts";

const CHILD = fileURLToPath(new URL("./fixtures/crash-child.ts", import.meta.url));
const BATCH = 40;
const EVENTS = 200;

let h: ProjectionHarness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(async () => {
  await h?.dispose();
});

/**
 * Starts the projection process and SIGKILLs it once its handler has written
 * `killAfter` events in this run (in the middle of a batch: the handler
 * reports inside the transaction, before the commit). Returns what it reported.
 */
async function runAndKill(killAfter: number): Promise<string[]> {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, "10", String(BATCH)], {
    cwd: fileURLToPath(new URL("../../..", import.meta.url)),
    env: { ...process.env, DATABASE_URL: h.database.url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const applied: string[] = [];
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  let buffer = "";
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on("exit", (code, signal) => resolve(signal ?? code)));
  const killed = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split("\n");
      buffer = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith("applied ")) continue;
        applied.push(line.slice("applied ".length));
        if (applied.length === killAfter) {
          child.kill("SIGKILL");
          resolve();
        }
      }
    });
    void exited.then(() => reject(new Error(`child exited before the kill point (${applied.length} applied): ${stderr}`)));
  });
  await killed;
  expect(await exited).toBe("SIGKILL");
  return applied;
}

async function appliedRows(): Promise<{ rows: number; maxCount: number }> {
  const { rows } = await sql<{ n: string; max: number | null }>`select count(*) as n, max(count) as max from crashy.applied`.execute(h.db);
  return { rows: Number(rows[0]!.n), maxCount: rows[0]!.max ?? 0 };
}

describe("crash safety", () => {
  it("a projection process killed mid-batch resumes exactly where it committed: no event applied twice, none skipped", async () => {
    await appendMany(h.store, EVENTS, { streams: 5 });
    // readAll holds back events while any older transaction in the cluster is open (other test files share
    // the server): wait until all are readable, so every batch below is a full one.
    await until(async () => (await h.store.readAll({ limit: EVENTS })).length === EVENTS);
    const log = await h.store.readAll({ limit: EVENTS });

    // Run 1: two batches commit, the third dies after 17 of its 40 events were written.
    const firstRun = await runAndKill(2 * BATCH + 17);
    expect(firstRun).toEqual(log.slice(0, 2 * BATCH + 17).map((e) => e.id));
    expect((await readCheckpoint(h.db, "crashy"))!.position).toEqual(positionOf(log[2 * BATCH - 1]!));
    expect(await appliedRows()).toEqual({ rows: 2 * BATCH, maxCount: 1 });

    // Run 2 resumes at event 81 (not 98: the 17 died with their transaction), and dies in its third batch too.
    const secondRun = await runAndKill(2 * BATCH + 5);
    expect(secondRun[0]).toBe(log[2 * BATCH]!.id);
    expect((await readCheckpoint(h.db, "crashy"))!.position).toEqual(positionOf(log[4 * BATCH - 1]!));
    expect(await appliedRows()).toEqual({ rows: 4 * BATCH, maxCount: 1 });

    // Run 3 (in process, no delay) finishes.
    const runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [probeProjection({ name: "crashy" })], standbyRetryMs: 50 });
    await runner.start();
    try {
      const head = await h.store.headPosition();
      expect(head).toEqual(positionOf(log.at(-1)!));
      await runner.waitForPosition("crashy", head, 30_000);
      expect((await runner.status())[0]!.position).toBe(formatPosition(head));
    } finally {
      await runner.stop();
    }
    expect(await appliedRows()).toEqual({ rows: EVENTS, maxCount: 1 });
    const { rows: missing } = await sql<{ n: string }>`select count(*) as n from eventstore.events e
      where not exists (select 1 from crashy.applied a where a.event_id = e.event_id)`.execute(h.db);
    expect(missing[0]!.n).toBe("0");
    const { rows: streams } = await sql<{ stream_id: string; events: number; expected: string }>`
      select s.stream_id, s.events, (select count(*) from eventstore.events e where e.stream_id = s.stream_id) as expected
        from crashy.streams s order by s.stream_id`.execute(h.db);
    expect(streams).toHaveLength(5);
    for (const stream of streams) expect(String(stream.events)).toBe(stream.expected);
    expect(Number((await readCheckpoint(h.db, "crashy"))!.eventsApplied)).toBe(EVENTS);
  });
});
