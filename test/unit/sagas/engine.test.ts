import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fold } from "../../../domain/shared/decider.ts";
import { isDomainError } from "../../../domain/shared/errors.ts";
import { TaskCommandSchema, taskDecider, type TaskCommandInput, type TaskEvent } from "../../../domain/task/index.ts";
import type { ExistingTask } from "../../../domain/task/state.ts";
import { advance, reactToRetryTimer, reactToTaskEvent, type SagaAction } from "../../../sagas/runtime/engine.ts";
import { defineSaga, sagaPlan } from "../../../sagas/runtime/types.ts";

const T = "t1";
const now = new Date("2026-12-01T10:00:00.000Z");
const at = now.toISOString();
const compensated: string[] = [];
const saga = defineSaga({
  kind: "test.three",
  steps: {
    reserve: { title: "reserve", work: () => ({ service: "maskin", action: "reserve", datacenter: "osl1", payload: { n: 1 } }), compensate: async () => void compensated.push("reserve") },
    configure: { title: "configure", run: async () => ({ ok: true }) },
    power: { title: "power", work: (task) => ({ service: "maskin", action: "power", datacenter: String(task.input.dc ?? "osl1") }), compensate: async () => void compensated.push("power") },
  },
});

/** An in-memory task stream: commands through the real decider. */
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

function created(input: Record<string, unknown> = {}): Stream {
  const stream = new Stream();
  stream.send({
    type: "CreateTask",
    taskId: T,
    kind: saga.kind,
    title: "three",
    resource: { type: "vm", id: "vm1" },
    scope: { tenantId: "a", projectId: null, environmentId: null },
    steps: sagaPlan(saga),
    deadline: "2026-12-01T11:00:00.000Z",
    input,
    at,
  });
  return stream;
}

const commands = (actions: SagaAction[]) => actions.filter((a) => a.type === "command").map((a) => (a as { command: TaskCommandInput }).command);

describe("step engine decisions", () => {
  it("TaskCreated: schedules the deadline and starts the first step", () => {
    const s = created();
    const actions = reactToTaskEvent(saga, s.events[0]!, s.state, now);
    expect(actions).toEqual([
      { type: "schedule", timer: { kind: "deadline", key: "", dueAt: "2026-12-01T11:00:00.000Z", payload: {} } },
      { type: "command", command: { type: "StartStep", taskId: T, step: "reserve", at } },
    ]);
  });

  it("TaskStepStarted of a work step: RequestWork from the declaration; TaskWorkRequested: publish it", () => {
    const s = created();
    const [, started] = s.send({ type: "StartStep", taskId: T, step: "reserve", at });
    expect(commands(reactToTaskEvent(saga, started!, s.state, now))).toEqual([
      { type: "RequestWork", taskId: T, step: "reserve", service: "maskin", action: "reserve", datacenter: "osl1", payload: { n: 1 }, at },
    ]);
    const [requested] = s.send({ type: "RequestWork", taskId: T, step: "reserve", service: "maskin", action: "reserve", datacenter: "osl1", payload: { n: 1 }, at });
    expect(reactToTaskEvent(saga, requested!, s.state, now)).toEqual([
      { type: "publish-work", requestId: `${T}:reserve:1`, step: "reserve", attempt: 1, service: "maskin", action: "reserve", datacenter: "osl1", target: null, payload: { n: 1 } },
    ]);
    // Answered already: a redelivered TaskWorkRequested publishes nothing.
    s.send({ type: "CompleteStep", taskId: T, step: "reserve", requestId: `${T}:reserve:1`, at });
    expect(reactToTaskEvent(saga, requested!, s.state, now)).toEqual([]);
  });

  it("an inline step runs in-process; the last completion succeeds the task", () => {
    const s = created();
    s.send({ type: "StartStep", taskId: T, step: "reserve", at });
    s.send({ type: "RequestWork", taskId: T, step: "reserve", service: "maskin", action: "reserve", datacenter: "osl1", at });
    s.send({ type: "CompleteStep", taskId: T, step: "reserve", requestId: `${T}:reserve:1`, at });
    s.send({ type: "StartStep", taskId: T, step: "configure", at });
    expect(advance(saga, s.state, now)).toEqual([{ type: "run-step", step: "configure" }]);
    s.send({ type: "CompleteStep", taskId: T, step: "configure", at });
    s.send({ type: "StartStep", taskId: T, step: "power", at });
    s.send({ type: "RequestWork", taskId: T, step: "power", service: "maskin", action: "power", datacenter: "osl1", at });
    const [completed] = s.send({ type: "CompleteStep", taskId: T, step: "power", requestId: `${T}:power:1`, at });
    expect(commands(reactToTaskEvent(saga, completed!, s.state, now))).toEqual([{ type: "SucceedTask", taskId: T, output: {}, at }]);
  });

  it("an attempt failure schedules a retry timer at retryAt; the timer asks again with the next attempt", () => {
    const s = created();
    s.send({ type: "StartStep", taskId: T, step: "reserve", at });
    s.send({ type: "RequestWork", taskId: T, step: "reserve", service: "maskin", action: "reserve", datacenter: "osl1", at });
    const retryAt = "2026-12-01T10:00:05.000Z";
    const [failed] = s.send({ type: "RecordAttemptFailure", taskId: T, step: "reserve", requestId: `${T}:reserve:1`, code: "busy", message: "bmc busy", transient: true, retryAt, at });
    expect(reactToTaskEvent(saga, failed!, s.state, now)).toEqual([
      { type: "forget-work", requestId: `${T}:reserve:1` },
      { type: "schedule", timer: { kind: "retry", key: "reserve", dueAt: retryAt, payload: { step: "reserve" } } },
    ]);
    const fired = reactToRetryTimer(saga, s.state, "reserve", new Date(retryAt));
    expect(commands(fired)).toMatchObject([{ type: "RequestWork", step: "reserve" }]);
    s.send(commands(fired)[0]!);
    expect(s.state.steps[0]!.request?.requestId).toBe(`${T}:reserve:2`);
    // A second firing (a timer row claimed again) asks for nothing: the request is outstanding.
    expect(reactToRetryTimer(saga, s.state, "reserve", new Date(retryAt))).toEqual([]);
  });

  it("cancellation: cancels the running request, compensates the running step and then the completed steps in reverse, confirms", () => {
    const s = created();
    for (const step of ["reserve", "configure"] as const) {
      s.send({ type: "StartStep", taskId: T, step, at });
      if (step === "reserve") s.send({ type: "RequestWork", taskId: T, step, service: "maskin", action: "reserve", datacenter: "osl1", at });
      s.send({ type: "CompleteStep", taskId: T, step, ...(step === "reserve" ? { requestId: `${T}:reserve:1` } : {}), at });
    }
    s.send({ type: "StartStep", taskId: T, step: "power", at });
    s.send({ type: "RequestWork", taskId: T, step: "power", service: "maskin", action: "power", datacenter: "osl1", at });
    const [requested] = s.send({ type: "RequestCancellation", taskId: T, reason: "user changed their mind", at });
    expect(reactToTaskEvent(saga, requested!, s.state, now)).toEqual([
      { type: "cancel-work", service: "maskin", requestId: `${T}:power:1`, reason: "task cancelled: user changed their mind" },
      { type: "compensate", steps: ["power", "reserve"] },
      { type: "command", command: { type: "ConfirmCancellation", taskId: T, at } },
    ]);
  });

  it("a finished task: stop outstanding work and forget its timers", () => {
    const s = created();
    s.send({ type: "StartStep", taskId: T, step: "reserve", at });
    s.send({ type: "RequestWork", taskId: T, step: "reserve", service: "maskin", action: "reserve", datacenter: "osl1", at });
    const [failed] = s.send({ type: "ExpireDeadline", taskId: T, at: "2026-12-01T11:00:00.000Z" });
    expect(reactToTaskEvent(saga, failed!, s.state, now)).toEqual([
      { type: "cancel-work", service: "maskin", requestId: `${T}:reserve:1`, reason: "task failed" },
      { type: "forget-task" },
    ]);
  });

  it("a step the saga does not declare is an error (the message becomes poison, not a silent stall)", () => {
    const other = defineSaga({ kind: saga.kind, steps: { reserve: saga.steps.reserve! } });
    const s = created();
    s.send({ type: "StartStep", taskId: T, step: "reserve", at });
    s.send({ type: "RequestWork", taskId: T, step: "reserve", service: "maskin", action: "reserve", datacenter: "osl1", at });
    s.send({ type: "CompleteStep", taskId: T, step: "reserve", requestId: `${T}:reserve:1`, at });
    s.send({ type: "StartStep", taskId: T, step: "configure", at });
    expect(() => advance(other, s.state, now)).toThrow(/has no step configure/);
  });

  it("property: any redelivery of any events, in any order, ends in the same history as one clean run", () => {
    const clean = simulate([]);
    expect(clean.state.status).toBe("succeeded");
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(200), fc.nat(200)), { maxLength: 40 }), (redeliveries) => {
        const run = simulate(redeliveries);
        expect(run.events.map((e) => e.type)).toEqual(clean.events.map((e) => e.type));
        expect(run.published).toEqual(clean.published);
      }),
      { numRuns: 200 },
    );
  });
});

/**
 * The runtime's loop in memory: each recorded event is handled once, and
 * (per `redeliveries`, [when, which]) earlier events are handled again at
 * later moments. Published work is answered by a successful result.
 */
function simulate(redeliveries: ReadonlyArray<readonly [number, number]>) {
  const s = created();
  const queue: TaskEvent[] = [...s.events];
  const handled: TaskEvent[] = [];
  const published = new Set<string>();
  const answers: string[] = [];
  for (let tick = 0; tick < 500 && (queue.length || answers.length); tick++) {
    for (const [when, which] of redeliveries) if (when === tick && handled.length) queue.push(handled[which % handled.length]!);
    const event = queue.shift();
    if (event) {
      handled.push(event);
      for (const action of reactToTaskEvent(saga, event, s.state, now)) {
        if (action.type === "command") queue.push(...s.send(action.command));
        if (action.type === "run-step") queue.push(...s.send({ type: "CompleteStep", taskId: T, step: action.step, at }));
        if (action.type === "publish-work" && !published.has(action.requestId)) {
          published.add(action.requestId); // Nats-Msg-Id drops a copy
          answers.push(action.requestId);
        }
      }
    } else {
      const requestId = answers.shift()!;
      queue.push(...s.send({ type: "CompleteStep", taskId: T, step: requestId.split(":")[1]!, requestId, at }));
    }
  }
  return { events: s.events, state: s.state, published: [...published] };
}
