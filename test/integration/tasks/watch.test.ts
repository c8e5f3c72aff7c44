import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../../cli/core/http.ts";
import { progressLines, waitForTask } from "../../../cli/core/wait.ts";
import { actorHeader } from "../api/support/test-auth.ts";
import { actors, createGraphqlHarness, type GraphqlHarness } from "../graphql/support/harness.ts";
import { tokenFor } from "../graphql/support/test-tokens.ts";
import { TaskDriver } from "./support.ts";

/**
 * cli/core/wait.ts (what `dv task watch` and `--wait` run) against a real
 * server: REST for the first read, the taskUpdated subscription for the rest,
 * while the test drives the task through the aggregate like a saga would.
 */
let h: GraphqlHarness;
let apiUrl: string;
const owner = actors.tenantAdmin("tw");

beforeAll(async () => {
  h = await createGraphqlHarness({ writeWaitMs: 20_000 });
  await h.ws(owner); // makes the server listen
  apiUrl = `http://${(h.app.server.address() as { address: string; port: number }).address}:${(h.app.server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await h?.dispose();
});

/** The CLI's client, authenticated the test way: header for REST, token for the WebSocket. */
function client(actor = owner): ApiClient {
  const header = actorHeader(actor);
  return new ApiClient({
    apiUrl,
    token: tokenFor(actor),
    fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), ...header } }),
  });
}

async function drive(d: TaskDriver, script: Array<() => Promise<unknown>>) {
  for (const step of script) {
    await new Promise((resolve) => setTimeout(resolve, 60));
    await step();
  }
}

async function seen(lines: string[], text: string) {
  const deadline = Date.now() + 15_000;
  while (!lines.some((line) => line.includes(text))) {
    if (Date.now() > deadline) throw new Error(`never printed ${text}: ${lines.join(" | ")}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("waitForTask (dv task watch)", () => {
  it("prints live step progress, blocks and retries, and ends 0 on success", async () => {
    const d = new TaskDriver(h.db.store, "watch-ok", { tenantId: "tw", projectId: "p1", environmentId: null });
    const created = await d.create(["prepare", "create-prod", "finish"]);
    await h.runner.waitForPosition("tasks", created.position!, 20_000);
    const lines: string[] = [];
    const waiting = waitForTask(client(), "watch-ok", { note: (line) => lines.push(line) });
    await drive(d, [
      () => d.start("prepare"),
      () => d.complete("prepare"),
      () => d.start("create-prod"),
      () => d.requestWork("create-prod"),
      () => d.attemptFailed("create-prod", "watch-ok:create-prod:1"),
      () => d.block("worker:sentral/dc1", "no heartbeat from sentral in dc1"),
      // Updates are the read model's state, so a block lifted before the watcher read it may never show: hold it until seen.
      () => seen(lines, "blocked on"),
      () => d.unblock("worker:sentral/dc1"),
      () => d.progress("create-prod", 40, "copying"),
      () => seen(lines, "40% copying"),
      () => d.complete("create-prod"),
      () => d.start("finish"),
      () => d.complete("finish"),
      () => d.succeed(),
    ]);
    const result = await waiting;
    expect(result.exitCode).toBe(0);
    expect(result.outcome).toBe("succeeded");
    const text = lines.join("\n");
    expect(text).toContain("[2/3] create-prod: running …");
    expect(text).toContain("[2/3] create-prod: attempt 1 failed (worker_error: worker said no); retrying at");
    expect(text).toContain("blocked on worker:sentral/dc1 (hard) since");
    expect(text).toContain("[2/3] create-prod: 40% copying");
    expect(text).toContain("[3/3] finish: done");
    expect(lines.at(-1)).toBe("succeeded");
  });

  it("ends 6 with the reason when the task fails, 7 when it is cancelled, at once when it already ended", async () => {
    const f = new TaskDriver(h.db.store, "watch-fail", { tenantId: "tw", projectId: null, environmentId: null });
    const created = await f.create(["one"]);
    await h.runner.waitForPosition("tasks", created.position!, 20_000);
    const lines: string[] = [];
    const failing = waitForTask(client(), "watch-fail", { note: (line) => lines.push(line) });
    await drive(f, [() => f.start("one"), () => f.fail("disk on fire")]);
    const failed = await failing;
    expect(failed.exitCode).toBe(6);
    expect(failed.reason).toBe("failed in step one: broken: disk on fire");
    expect(lines.at(-1)).toBe("failed in step one: broken: disk on fire");

    const again = await waitForTask(client(), "watch-fail");
    expect(again.exitCode).toBe(6);

    const c = new TaskDriver(h.db.store, "watch-cancel", { tenantId: "tw", projectId: null, environmentId: null });
    const made = await c.create(["one"]);
    await h.runner.waitForPosition("tasks", made.position!, 20_000);
    const cancelling = waitForTask(client(), "watch-cancel", { poll: true, pollMs: 50 });
    await drive(c, [() => c.start("one"), () => c.run({ type: "RequestCancellation", reason: "not needed" }), () => c.run({ type: "ConfirmCancellation" })]);
    const cancelled = await cancelling;
    expect(cancelled.exitCode).toBe(7);
    expect(cancelled.reason).toBe("cancelled: not needed");
  });

  it("a task the caller cannot see is exit 2, like a missing one", async () => {
    await expect(waitForTask(client(actors.tenantAdmin("other")), "watch-ok")).rejects.toMatchObject({ exitCode: 2 });
  });

  it("describes a first sight of a task half done", () => {
    const lines = progressLines(undefined, {
      id: "t", title: "Bootstrap", status: "running",
      steps: [{ name: "a", status: "completed" }, { name: "b", status: "running", percent: 10, message: "x" }, { name: "c", status: "pending" }],
    });
    expect(lines).toEqual(["task t: Bootstrap (running)", "[1/3] a: done", "[2/3] b: running …", "[2/3] b: 10% x"]);
  });
});
