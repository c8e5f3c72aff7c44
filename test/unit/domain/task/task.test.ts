import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fold } from "../../../../domain/shared/decider.ts";
import { DomainError } from "../../../../domain/shared/errors.ts";
import { TaskCommandSchema, taskDecider, taskEvent, type TaskCommand, type TaskCommandInput, type TaskEvent } from "../../../../domain/task/index.ts";
import { deciderSpec } from "../../support/decider-spec.ts";

const spec = deciderSpec(taskDecider);
const T = "t1";
const at = "2026-12-01T10:00:00.000Z";
const later = "2026-12-01T10:05:00.000Z";
const deadline = "2026-12-01T11:00:00.000Z";

const cmd = (input: TaskCommandInput): TaskCommand => TaskCommandSchema.parse(input);

const create = cmd({
  type: "CreateTask",
  taskId: T,
  kind: "test.two-steps",
  title: "Two steps",
  resource: { type: "project", id: "p1" },
  scope: { tenantId: "a", projectId: "p1", environmentId: null },
  steps: [
    { name: "one", title: "Step one" },
    { name: "two", title: "Step two" },
  ],
  deadline,
  maxAttempts: 2,
  at,
});
const created = (taskDecider.decide(create, taskDecider.initialState) as TaskEvent[])[0]!;
const started = [taskEvent("TaskStarted", { taskId: T }), taskEvent("TaskStepStarted", { taskId: T, step: "one" })];
const work = { type: "RequestWork", taskId: T, step: "one", service: "test", action: "poke", datacenter: "osl1", at } as const;
const requested = (attempt: number) =>
  taskEvent("TaskWorkRequested", {
    taskId: T,
    step: "one",
    attempt,
    requestId: `${T}:one:${attempt}`,
    service: "test",
    action: "poke",
    datacenter: "osl1",
    payload: {},
  });
const failure = (attempt: number, transient = true, message = "no answer") =>
  cmd({ type: "RecordAttemptFailure", taskId: T, step: "one", requestId: `${T}:one:${attempt}`, code: "timeout", message, transient, retryAt: later, at });

describe("Task decider", () => {
  it("creates a pending task once; the same request again changes nothing", () => {
    expect(created.type).toBe("TaskCreated");
    spec.given([created]).when(create).thenNothing();
    spec.given([created]).when({ ...create, kind: "other" } as TaskCommand).thenFails("task_exists");
  });

  it("refuses a deadline that has passed and duplicate step names", () => {
    spec.given([]).when({ ...create, deadline: at } as TaskCommand).thenFails("deadline_in_past");
    spec.given([]).when({ ...create, steps: [{ name: "x", title: "x" }, { name: "x", title: "y" }] } as TaskCommand).thenFails("duplicate_step", { step: "x" });
  });

  it("commands to a task that does not exist fail with task_not_found", () => {
    spec.given([]).when(cmd({ type: "StartStep", taskId: T, step: "one", at })).thenFails("task_not_found");
  });

  it("starting the first step starts the task; starting it again is a no-op; steps run in order", () => {
    spec.given([created]).when(cmd({ type: "StartStep", taskId: T, step: "one", at })).then(started);
    spec.given([created, ...started]).when(cmd({ type: "StartStep", taskId: T, step: "one", at })).thenNothing();
    spec.given([created]).when(cmd({ type: "StartStep", taskId: T, step: "two", at })).thenFails("step_out_of_order", { waitingFor: "one" });
    spec.given([created]).when(cmd({ type: "StartStep", taskId: T, step: "nope", at })).thenFails("unknown_step");
  });

  it("requests work once per attempt; a redelivered request changes nothing", () => {
    spec.given([created, ...started]).when(cmd(work)).then([requested(1)]);
    spec.given([created, ...started, requested(1)]).when(cmd(work)).thenNothing();
  });

  it("a transient failure schedules a retry; the next request is attempt 2; exhausting attempts fails the task with the error", () => {
    const first = spec.given([created, ...started, requested(1)]).when(failure(1)).then([
      taskEvent("TaskStepAttemptFailed", { taskId: T, step: "one", attempt: 1, requestId: `${T}:one:1`, code: "timeout", message: "no answer", retryAt: later }),
    ]);
    expect(first.state).toMatchObject({ status: "running" });
    const history = [created, ...started, requested(1), ...first.events];
    spec.given(history).when(failure(1)).thenNothing(); // the same failure delivered twice
    spec.given(history).when(cmd(work)).then([requested(2)]);
    const last = spec.given([...history, requested(2)]).when(failure(2));
    const outcome = last.then([
      taskEvent("TaskStepAttemptFailed", { taskId: T, step: "one", attempt: 2, requestId: `${T}:one:2`, code: "timeout", message: "no answer", retryAt: later }),
      taskEvent("TaskFailed", { taskId: T, step: "one", code: "timeout", reason: "no answer (gave up after 2 attempts)" }),
    ]);
    expect(outcome.state).toMatchObject({ status: "failed", failure: { code: "timeout", step: "one" } });
  });

  it("a permanent failure fails the task at once with the error's text", () => {
    const { state } = spec.given([created, ...started, requested(1)]).when(failure(1, false, "poison: cannot parse")).then([
      taskEvent("TaskStepAttemptFailed", { taskId: T, step: "one", attempt: 1, requestId: `${T}:one:1`, code: "timeout", message: "poison: cannot parse", retryAt: later }),
      taskEvent("TaskFailed", { taskId: T, step: "one", code: "timeout", reason: "poison: cannot parse" }),
    ]);
    expect(state).toMatchObject({ status: "failed" });
  });

  it("an answer to an older attempt is ignored", () => {
    const history = [created, ...started, requested(1), taskEvent("TaskStepAttemptFailed", { taskId: T, step: "one", attempt: 1, requestId: `${T}:one:1`, code: "x", message: "x", retryAt: later }), requested(2)];
    spec.given(history).when(cmd({ type: "CompleteStep", taskId: T, step: "one", requestId: `${T}:one:1`, at })).thenNothing();
    spec.given(history).when(cmd({ type: "CompleteStep", taskId: T, step: "one", requestId: `${T}:one:2`, at })).then([
      taskEvent("TaskStepCompleted", { taskId: T, step: "one", output: {} }),
    ]);
  });

  it("blocks with a reason, once; completing the blocked step unblocks it", () => {
    const block = cmd({ type: "BlockTask", taskId: T, dependency: "worker test@osl1", kind: "hard", reason: "no heartbeat for 15 s", at });
    const blocked = taskEvent("TaskBlocked", { taskId: T, step: "one", dependency: "worker test@osl1", kind: "hard", reason: "no heartbeat for 15 s", since: at });
    const { state } = spec.given([created, ...started, requested(1)]).when(block).then([blocked]);
    expect(state).toMatchObject({ status: "blocked", blocked: { reason: "no heartbeat for 15 s" } });
    spec.given([created, ...started, requested(1), blocked]).when(block).thenNothing();
    spec.given([created, ...started, requested(1), blocked]).when(cmd({ type: "UnblockTask", taskId: T, dependency: "other", at })).thenNothing();
    const done = spec.given([created, ...started, requested(1), blocked]).when(cmd({ type: "CompleteStep", taskId: T, step: "one", at })).then([
      taskEvent("TaskUnblocked", { taskId: T, dependency: "worker test@osl1", blockedSince: at }),
      taskEvent("TaskStepCompleted", { taskId: T, step: "one", output: {} }),
    ]);
    expect(done.state).toMatchObject({ status: "running", blocked: null });
  });

  it("succeeds only when every step completed", () => {
    spec.given([created, ...started]).when(cmd({ type: "SucceedTask", taskId: T, at })).thenFails("steps_incomplete", { steps: ["one", "two"] });
  });

  it("cancelling a task that has not started ends it; a running one waits for the saga to confirm", () => {
    spec.given([created]).when(cmd({ type: "RequestCancellation", taskId: T, reason: "not needed", at })).then([
      taskEvent("TaskCancellationRequested", { taskId: T, reason: "not needed" }),
      taskEvent("TaskCancelled", { taskId: T, reason: "not needed" }),
    ]);
    const requestedCancel = taskEvent("TaskCancellationRequested", { taskId: T, reason: "stop" });
    spec.given([created, ...started]).when(cmd({ type: "RequestCancellation", taskId: T, reason: "stop", at })).then([requestedCancel]);
    spec.given([created, ...started, requestedCancel]).when(cmd(work)).thenNothing();
    spec.given([created, ...started, requestedCancel]).when(cmd({ type: "ConfirmCancellation", taskId: T, at })).then([taskEvent("TaskCancelled", { taskId: T, reason: "stop" })]);
    spec.given([created, taskEvent("TaskCancelled", { taskId: T, reason: "x" })]).when(cmd({ type: "RequestCancellation", taskId: T, at })).thenFails("task_finished");
  });

  it("retry runs a failed task again from its failed step with a fresh attempt budget", () => {
    const failedEvents = [created, ...started, requested(1), taskEvent("TaskFailed", { taskId: T, step: "one", code: "x", reason: "boom" })];
    const newDeadline = "2026-12-01T12:00:00.000Z";
    const retried = spec.given(failedEvents).when(cmd({ type: "RetryTask", taskId: T, deadline: newDeadline, at })).then([
      taskEvent("TaskRetried", { taskId: T, step: "one", deadline: newDeadline }),
    ]);
    expect(retried.state).toMatchObject({ status: "running", deadline: newDeadline });
    spec.given([...failedEvents, ...retried.events]).when(cmd(work)).then([{ ...requested(2) }]);
    spec.given([created, ...started]).when(cmd({ type: "RetryTask", taskId: T, deadline: newDeadline, at })).thenFails("task_not_failed");
  });

  it("the deadline fails the task with what it was waiting for, and not before it passes", () => {
    const blocked = taskEvent("TaskBlocked", { taskId: T, step: "one", dependency: "bmc", kind: "hard", reason: "connection refused", since: at });
    spec.given([created, ...started, blocked]).when(cmd({ type: "ExpireDeadline", taskId: T, at: later })).thenNothing();
    spec.given([created, ...started, blocked]).when(cmd({ type: "ExpireDeadline", taskId: T, at: deadline })).then([
      taskEvent("TaskFailed", {
        taskId: T,
        step: "one",
        code: "deadline_exceeded",
        reason: `deadline ${deadline} passed while blocked in step one; blocked on bmc since ${at}: connection refused`,
      }),
    ]);
  });

  it("property: after any sequence of commands, a finished task never changes again through saga commands", () => {
    const sagaCommand = fc.oneof(
      fc.constantFrom("one", "two").map((step) => cmd({ type: "StartStep", taskId: T, step, at })),
      fc.constantFrom("one", "two").map((step) => cmd({ ...work, step })),
      fc.constantFrom("one", "two").map((step) => cmd({ type: "CompleteStep", taskId: T, step, at })),
      fc.tuple(fc.constantFrom("one", "two"), fc.integer({ min: 1, max: 3 }), fc.boolean()).map(([step, attempt, transient]) =>
        cmd({ type: "RecordAttemptFailure", taskId: T, step, requestId: `${T}:${step}:${attempt}`, code: "e", message: "e", transient, retryAt: later, at }),
      ),
      fc.constant(cmd({ type: "BlockTask", taskId: T, dependency: "d", kind: "soft", reason: "r", at })),
      fc.constant(cmd({ type: "UnblockTask", taskId: T, dependency: "d", at })),
      fc.constant(cmd({ type: "SucceedTask", taskId: T, at })),
      fc.constant(cmd({ type: "FailTask", taskId: T, code: "x", reason: "x", at })),
      fc.constant(cmd({ type: "ExpireDeadline", taskId: T, at: deadline })),
    );
    fc.assert(
      fc.property(fc.array(sagaCommand, { maxLength: 40 }), (commands) => {
        const history: TaskEvent[] = [created];
        let finishedAt = -1;
        for (const command of commands) {
          const outcome = taskDecider.decide(command, fold(taskDecider, history));
          if (outcome instanceof DomainError) continue;
          if (finishedAt >= 0) expect(outcome).toEqual([]);
          history.push(...outcome);
          const state = fold(taskDecider, history);
          if (state.exists && ["succeeded", "failed", "cancelled"].includes(state.status) && finishedAt < 0) finishedAt = history.length;
        }
      }),
    );
  });
});
