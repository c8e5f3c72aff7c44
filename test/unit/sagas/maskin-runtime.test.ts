import { describe, expect, it } from "vitest";
import type { WorkResultMessage } from "../../../adapters/workers/port.ts";
import { fold } from "../../../domain/shared/decider.ts";
import { isDomainError } from "../../../domain/shared/errors.ts";
import { TaskCommandSchema, taskDecider, type TaskCommandInput, type TaskEvent } from "../../../domain/task/index.ts";
import type { ExistingTask } from "../../../domain/task/state.ts";
import { advance, decideResult, reactToTaskEvent, reactToWaitEvent } from "../../../sagas/runtime/engine.ts";
import { defineSaga, sagaPlan } from "../../../sagas/runtime/types.ts";

/**
 * The runtime extensions the maskin sagas need, as engine decisions: a wait
 * step (check on start, check again on its completion events) and a worker
 * failure that names a dependency (blocked while retrying, unblocked by the
 * next answer that gets past it).
 */
const T = "t1";
const now = new Date("2026-12-01T10:00:00.000Z");
const at = now.toISOString();
const retryAt = "2026-12-01T10:00:05.000Z";

const saga = defineSaga({
  kind: "test.wait",
  steps: {
    power: {
      title: "power on",
      work: () => ({ service: "maskin", action: "power", datacenter: "osl1", payload: { hostId: "h1", operation: "on" } }),
      dependencyOf: (failure, task) => (failure.code === "bmc_unreachable" ? `bmc ${String(task.input.hostId)}` : null),
    },
    netboot: {
      title: "wait for netboot",
      waitingFor: "waiting for netboot",
      check: async () => null,
      completesOn: [{ eventType: "HostNetbootFetched", streamPrefix: "maskin-host-", taskIdOf: () => T }],
    },
    ready: { title: "ready", run: async () => ({}) },
  },
});

class Stream {
  events: TaskEvent[] = [];
  get state(): ExistingTask {
    const state = fold(taskDecider, this.events);
    if (!state.exists) throw new Error("no task");
    return state;
  }
  send(input: TaskCommandInput): TaskEvent[] {
    const decided = taskDecider.decide(TaskCommandSchema.parse(input), fold(taskDecider, this.events));
    if (isDomainError(decided)) throw decided;
    this.events.push(...decided);
    return [...decided];
  }
}

function created(): Stream {
  const s = new Stream();
  s.send({
    type: "CreateTask",
    taskId: T,
    kind: saga.kind,
    title: "wait",
    resource: { type: "host", id: "h1" },
    scope: { tenantId: "a", projectId: "p", environmentId: null },
    steps: sagaPlan(saga),
    deadline: "2026-12-01T11:00:00.000Z",
    input: { hostId: "h1" },
    at,
  });
  return s;
}

function powerRequested(): Stream {
  const s = created();
  s.send({ type: "StartStep", taskId: T, step: "power", at });
  s.send({ type: "RequestWork", taskId: T, step: "power", service: "maskin", action: "power", datacenter: "osl1", at });
  return s;
}

const base = { taskId: T, step: "power", service: "maskin", action: "power", datacenter: "osl1", workerId: "w1", at };
const failed = (attempt: number, code: string, extra: Partial<WorkResultMessage> = {}): WorkResultMessage =>
  ({ kind: "failed", ...base, requestId: `${T}:power:${attempt}`, transient: true, code, message: `${code} on attempt ${attempt}`, ...extra }) as WorkResultMessage;
const succeeded = (attempt: number): WorkResultMessage => ({ kind: "succeeded", ...base, requestId: `${T}:power:${attempt}`, output: { state: "on" } });

/** Sends what the engine decided and returns the types of the events it caused. */
const apply = (s: Stream, commands: TaskCommandInput[]) => commands.flatMap((c) => s.send(c)).map((e) => e.type);

describe("wait steps", () => {
  it("starting a wait step runs its check; a completion event checks again only while the task is in that step", () => {
    const s = powerRequested();
    s.send({ type: "CompleteStep", taskId: T, step: "power", requestId: `${T}:power:1`, at });
    // Not yet in the wait step: an early fact decides nothing (the start's check will find it).
    expect(reactToWaitEvent(saga, s.state, "netboot")).toEqual([]);
    const started = s.send({ type: "StartStep", taskId: T, step: "netboot", at });
    expect(reactToTaskEvent(saga, started.at(-1)!, s.state, now)).toEqual([{ type: "check-wait", step: "netboot" }]);
    expect(reactToWaitEvent(saga, s.state, "netboot")).toEqual([{ type: "check-wait", step: "netboot" }]);
    // The progress the runtime reports while waiting causes nothing (no loop).
    const [progressed] = s.send({ type: "ReportProgress", taskId: T, step: "netboot", percent: 0, message: "waiting for netboot", at });
    expect(reactToTaskEvent(saga, progressed!, s.state, now)).toEqual([]);
    // Another step's name, a finished step, a cancelled task: nothing.
    expect(reactToWaitEvent(saga, s.state, "power")).toEqual([]);
    s.send({ type: "CompleteStep", taskId: T, step: "netboot", output: { fetched: true }, at });
    expect(reactToWaitEvent(saga, s.state, "netboot")).toEqual([]);
    expect(advance(saga, s.state, now)).toEqual([{ type: "command", command: { type: "StartStep", taskId: T, step: "ready", at } }]);
  });

  it("a deadline passing while waiting fails the task with what it waited for", () => {
    const s = powerRequested();
    s.send({ type: "CompleteStep", taskId: T, step: "power", requestId: `${T}:power:1`, at });
    s.send({ type: "StartStep", taskId: T, step: "netboot", at });
    s.send({ type: "ReportProgress", taskId: T, step: "netboot", percent: 0, message: "waiting for netboot", at });
    s.send({ type: "ExpireDeadline", taskId: T, at: "2026-12-01T11:00:00.000Z" });
    expect(s.state.failure).toMatchObject({ step: "netboot", code: "deadline_exceeded" });
    expect(s.state.failure!.reason).toContain("last progress: waiting for netboot");
    expect(reactToWaitEvent(saga, s.state, "netboot")).toEqual([]);
  });

  it("defineSaga refuses a step that is none or several of work, wait and inline", () => {
    expect(() => defineSaga({ kind: "x", steps: { a: { title: "a" } as never } })).toThrow(/exactly one/);
    expect(() => defineSaga({ kind: "x", steps: { a: { title: "a", run: async () => ({}), work: () => ({ service: "s", action: "a", datacenter: "d" }) } as never } })).toThrow(
      /exactly one/,
    );
  });
});

describe("a failure that names a dependency", () => {
  it("bmc_unreachable: attempt failure (retried) and blocked on the BMC with the error as the reason; a later success unblocks and completes", () => {
    const s = powerRequested();
    const first = decideResult(saga, s.state, failed(1, "bmc_unreachable"), { at, retryAt });
    expect(first).toEqual([
      { type: "RecordAttemptFailure", taskId: T, step: "power", requestId: `${T}:power:1`, code: "bmc_unreachable", message: "bmc_unreachable on attempt 1", transient: true, retryAt, at },
      { type: "BlockTask", taskId: T, dependency: "bmc h1", kind: "hard", reason: "bmc_unreachable on attempt 1", at },
    ]);
    expect(apply(s, first)).toEqual(["TaskStepAttemptFailed", "TaskBlocked"]);
    expect(s.state.status).toBe("blocked");
    // Retries go on while blocked: the retry timer is scheduled as usual.
    expect(advance(saga, s.state, now)).toEqual([{ type: "schedule", timer: { kind: "retry", key: "power", dueAt: retryAt, payload: { step: "power" } } }]);
    s.send({ type: "RequestWork", taskId: T, step: "power", service: "maskin", action: "power", datacenter: "osl1", at });
    // Still unreachable: another attempt failure, no second block.
    const second = decideResult(saga, s.state, failed(2, "bmc_unreachable"), { at, retryAt });
    expect(second.map((c) => c.type)).toEqual(["RecordAttemptFailure"]);
    apply(s, second);
    s.send({ type: "RequestWork", taskId: T, step: "power", service: "maskin", action: "power", datacenter: "osl1", at });
    const third = decideResult(saga, s.state, succeeded(3), { at, retryAt });
    expect(third.map((c) => c.type)).toEqual(["UnblockTask", "CompleteStep"]);
    expect(third[0]).toMatchObject({ dependency: "bmc h1" });
    expect(apply(s, third)).toEqual(["TaskUnblocked", "TaskStepCompleted"]);
    expect(s.state.status).toBe("running");
  });

  it("the result's own dependency wins over the step's mapping; a later failure that names none unblocks", () => {
    const s = powerRequested();
    const first = decideResult(saga, s.state, failed(1, "timeout", { dependency: "bmc h1 (redfish)" }), { at, retryAt });
    expect(first.at(-1)).toMatchObject({ type: "BlockTask", dependency: "bmc h1 (redfish)" });
    apply(s, first);
    s.send({ type: "RequestWork", taskId: T, step: "power", service: "maskin", action: "power", datacenter: "osl1", at });
    const second = decideResult(saga, s.state, failed(2, "power_refused"), { at, retryAt });
    expect(second.map((c) => c.type)).toEqual(["RecordAttemptFailure", "UnblockTask"]);
    expect(apply(s, second)).toEqual(["TaskStepAttemptFailed", "TaskUnblocked"]);
  });

  it("a stale answer (an older attempt's) neither blocks nor unblocks; a permanent failure fails without blocking", () => {
    const s = powerRequested();
    apply(s, decideResult(saga, s.state, failed(1, "bmc_unreachable"), { at, retryAt }));
    s.send({ type: "RequestWork", taskId: T, step: "power", service: "maskin", action: "power", datacenter: "osl1", at });
    const stale = decideResult(saga, s.state, succeeded(1), { at, retryAt });
    expect(stale.map((c) => c.type)).toEqual(["CompleteStep"]);
    expect(apply(s, stale)).toEqual([]);
    expect(s.state.status).toBe("blocked");
    const permanent = decideResult(saga, s.state, failed(2, "bmc_unreachable", { transient: false }), { at, retryAt });
    expect(permanent.map((c) => c.type)).toEqual(["RecordAttemptFailure", "UnblockTask"]);
    apply(s, permanent);
    expect(s.state.status).toBe("failed");
  });

  it("a failure naming no dependency is just an attempt failure", () => {
    const s = powerRequested();
    expect(decideResult(saga, s.state, failed(1, "transient_failure"), { at, retryAt }).map((c) => c.type)).toEqual(["RecordAttemptFailure"]);
    expect(decideResult(saga, s.state, { kind: "progress", ...base, requestId: `${T}:power:1`, percent: 50, message: "half" }, { at, retryAt })).toEqual([
      { type: "ReportProgress", taskId: T, step: "power", percent: 50, message: "half", at },
    ]);
  });
});
