import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import type { EventStore } from "../../adapters/eventstore/port.ts";
import {
  HeartbeatSchema,
  WorkResultMessageSchema,
  type Consumption,
  type Delivery,
  type Heartbeat,
  type SagaBus,
  type WorkResultMessage,
} from "../../adapters/workers/port.ts";
import { loadStream } from "../../commands/pipeline.ts";
import { executeTaskCommand, taskEnvelopeScope } from "../../commands/task/index.ts";
import type { Actor, Scope } from "../../domain/shared/envelope.ts";
import { fold } from "../../domain/shared/decider.ts";
import { isDomainError } from "../../domain/shared/errors.ts";
import type { TaskCommandInput } from "../../domain/task/commands.ts";
import { taskDecider } from "../../domain/task/decider.ts";
import { taskEventSchemas, type TaskEvent } from "../../domain/task/events.ts";
import { isTerminal, type ExistingTask } from "../../domain/task/state.ts";
import { taskStreamId } from "../../domain/task/stream.ts";
import { DEFAULT_BACKOFF, retryAt, backoffDelayMs, type BackoffPolicy } from "./backoff.ts";
import { decideResult, reactToRetryTimer, reactToTaskEvent, reactToWaitEvent, type SagaAction } from "./engine.ts";
import { DEFAULT_HEALTH, workerDependency, workerHealth, type HealthPolicy } from "./health.ts";
import {
  fireDueTimers,
  forgetTask,
  forgetWork,
  listOutstandingWork,
  markBlocked,
  scheduleTimer,
  trackWork,
  type DueTimer,
} from "./state-store.ts";
import { isInlineStep, isWaitStep, type SagaTrigger, type TaskSaga, type TriggerEvent, type WaitCompletion } from "./types.ts";

/** A wait step that one completion event type may complete. */
interface WaitRegistration<Deps> {
  readonly saga: TaskSaga<Deps>;
  readonly step: string;
  readonly completion: WaitCompletion<Deps>;
}

export const SAGA_ACTOR: Actor = { kind: "service", id: "sagas" };

export interface SagaRuntimeOptions<Deps = unknown> {
  readonly store: EventStore;
  /** For schema `sagas` (timers, outstanding work); the caller owns it. */
  readonly pool: pg.Pool;
  readonly bus: SagaBus;
  readonly sagas: readonly TaskSaga<Deps>[];
  /** Handed to inline steps and compensations. */
  readonly deps?: Deps;
  /** Durable consumer names (default "SAGAS_EVENTS", "SAGAS_RESULTS"). */
  readonly consumerPrefix?: string;
  /** Messages handled at once per consumer (default 64). */
  readonly maxInFlight?: number;
  /** Redelivery when a message is not acked in time (default 30 000 ms). */
  readonly ackWaitMs?: number;
  /** Deliveries of a failing message before it goes to DV_DLQ (default 5). */
  readonly maxDeliver?: number;
  /** Backoff between redeliveries of a failing message (default 200 ms .. 5 s, full jitter). */
  readonly redeliveryBackoff?: BackoffPolicy;
  /** Backoff of a step's transient failure (default 1 s .. 60 s, full jitter). */
  readonly retryBackoff?: BackoffPolicy;
  readonly health?: HealthPolicy;
  /** How often due timers are looked for (default 250 ms). */
  readonly timerPollMs?: number;
  readonly clock?: () => Date;
  readonly random?: () => number;
  readonly onError?: (error: unknown, context: string) => void;
}

export interface SagaRuntimeStats {
  readonly eventsHandled: number;
  readonly resultsHandled: number;
  readonly timersFired: number;
  readonly deadLettered: number;
  readonly workPublished: number;
}

type ParsedEvent = { readonly id: string; readonly correlationId: string; readonly event: TaskEvent; readonly taskId: string };

/**
 * Drives every task whose kind one of `sagas` declares: consumes task events
 * and worker results (durable, explicit ack after the command is stored),
 * fires durable timers, and blocks/unblocks tasks from worker heartbeats.
 * Several runtimes may run at once (consumers share the durable, timers are
 * claimed with skip locked, commands are idempotent).
 */
export class SagaRuntime<Deps = unknown> {
  private readonly sagas = new Map<string, TaskSaga<Deps>>();
  private readonly scopes = new Map<string, Scope>();
  private readonly lastSeen = new Map<string, Date>();
  private readonly queues = new Map<string, Promise<void>>();
  private consumptions: Consumption[] = [];
  private unsubscribeHealth: (() => void) | null = null;
  private loops: Promise<void>[] = [];
  private running = false;
  private stopController = new AbortController();
  private watchingSince = new Date(0);
  private counters = { eventsHandled: 0, resultsHandled: 0, timersFired: 0, deadLettered: 0, workPublished: 0 };

  constructor(private readonly options: SagaRuntimeOptions<Deps>) {
    for (const saga of options.sagas) {
      if (this.sagas.has(saga.kind)) throw new Error(`two sagas drive task kind ${saga.kind}`);
      this.sagas.set(saga.kind, saga);
    }
  }

  get stats(): SagaRuntimeStats {
    return { ...this.counters };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopController = new AbortController();
    this.watchingSince = this.now();
    const prefix = this.options.consumerPrefix ?? "SAGAS";
    const consume = { maxInFlight: this.options.maxInFlight ?? 64, ackWaitMs: this.options.ackWaitMs ?? 30_000 };
    this.unsubscribeHealth = this.options.bus.onHeartbeat((heartbeat) => this.noteHeartbeat(heartbeat));
    this.consumptions = [
      this.options.bus.consumeTaskEvents({ ...consume, durable: `${prefix}_EVENTS` }, (d) => this.onTaskEvent(d)),
      this.options.bus.consumeResults({ ...consume, durable: `${prefix}_RESULTS` }, (d) => this.onResult(d)),
      ...[...this.waitRegistrations()].map(([key, registrations]) => {
        const { eventType, streamPrefix } = registrations[0]!.completion;
        return this.options.bus.consumeEvents(
          { ...consume, durable: `${prefix}_WAIT_${key.replace(/[^A-Za-z0-9]/g, "_").toUpperCase()}`, eventType, streamPrefix },
          (d) => this.onWaitEvent(registrations, d),
        );
      }),
      ...this.options.sagas.flatMap((saga) =>
        (saga.triggers ?? []).map((trigger) =>
          this.options.bus.consumeEvents(
            { ...consume, durable: `${prefix}_TRIGGER_${trigger.name.toUpperCase().replaceAll("-", "_")}`, eventType: trigger.eventType, streamPrefix: trigger.streamPrefix },
            (d) => this.onTrigger(trigger, d),
          ),
        ),
      ),
    ];
    this.loops = [this.timerLoop(), this.healthLoop()];
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopController.abort();
    this.unsubscribeHealth?.();
    await Promise.all(this.consumptions.map((c) => c.stop()));
    await Promise.all(this.loops);
    await Promise.all([...this.queues.values()]);
    this.consumptions = [];
    this.loops = [];
  }

  // --- messages ------------------------------------------------------------------------------

  private onTaskEvent(delivery: Delivery): Promise<void> {
    let parsed: ParsedEvent | null = null;
    try {
      parsed = parseTaskEvent(delivery);
    } catch (error) {
      return this.failed(delivery, null, error);
    }
    const message = parsed;
    return this.serially(message.taskId, () =>
      this.settle(delivery, message.taskId, async () => {
        await this.handleTaskEvent(message);
        this.counters.eventsHandled += 1;
      }),
    );
  }

  /** Wait steps by the event (type + stream prefix) that completes them: one durable consumer each. */
  private waitRegistrations(): Map<string, WaitRegistration<Deps>[]> {
    const byEvent = new Map<string, WaitRegistration<Deps>[]>();
    for (const saga of this.options.sagas) {
      for (const [step, definition] of Object.entries(saga.steps)) {
        if (!isWaitStep(definition)) continue;
        for (const completion of definition.completesOn) {
          const key = `${completion.eventType}_${completion.streamPrefix}`;
          byEvent.set(key, [...(byEvent.get(key) ?? []), { saga, step, completion }]);
        }
      }
    }
    return byEvent;
  }

  /** A fact a wait step completes on: check again for the task it names (when that task waits in that step now). */
  private onWaitEvent(registrations: readonly WaitRegistration<Deps>[], delivery: Delivery): Promise<void> {
    let event: TriggerEvent;
    try {
      event = parseTriggerEvent(delivery);
    } catch (error) {
      return this.failed(delivery, null, error);
    }
    const matching = registrations.filter((r) => r.completion.eventType === event.type);
    if (matching.length === 0) return this.settle(delivery, null, async () => {}); // another type on a shared subject
    return this.settle(delivery, null, async () => {
      for (const registration of matching) {
        const taskId = await registration.completion.taskIdOf(event, this.options.deps as Deps);
        if (!taskId) continue;
        await this.serially(taskId, async () => {
          const task = await this.loadTask(taskId);
          if (!task || task.kind !== registration.saga.kind) return;
          const actions = reactToWaitEvent(registration.saga, task, registration.step);
          await this.perform(registration.saga, task, actions, { correlationId: event.correlationId, causationId: event.id });
        });
      }
      this.counters.eventsHandled += 1;
    });
  }

  /** A fact that starts a task: create it (idempotent by the id the trigger derives from the event). */
  private onTrigger(trigger: SagaTrigger, delivery: Delivery): Promise<void> {
    let event: TriggerEvent;
    let create: TaskCommandInput | null;
    try {
      event = parseTriggerEvent(delivery);
      if (event.type !== trigger.eventType) return this.settle(delivery, null, async () => {}); // another type on a shared subject
      create = trigger.start(event, this.now());
    } catch (error) {
      return this.failed(delivery, null, error);
    }
    if (!create) return this.settle(delivery, null, async () => {});
    const command = create;
    if (command.type !== "CreateTask") return this.failed(delivery, null, new Error(`trigger ${trigger.name} returned ${command.type}, not CreateTask`));
    return this.serially(command.taskId, () =>
      this.settle(delivery, null, async () => {
        await executeTaskCommand(this.options.store, command, {
          actor: SAGA_ACTOR,
          correlationId: event.correlationId,
          causationId: event.id,
          scope: taskEnvelopeScope(command.scope),
        });
        this.counters.eventsHandled += 1;
      }),
    );
  }

  private onResult(delivery: Delivery): Promise<void> {
    let result: WorkResultMessage;
    try {
      result = WorkResultMessageSchema.parse(JSON.parse(new TextDecoder().decode(delivery.data)));
    } catch (error) {
      return this.failed(delivery, null, error);
    }
    return this.serially(result.taskId, () =>
      this.settle(delivery, result.taskId, async () => {
        await this.handleResult(result, delivery.headers["Dv-Correlation-Id"] ?? result.requestId);
        this.counters.resultsHandled += 1;
      }),
    );
  }

  /** One message per task at a time (across both consumers): no pointless races on the task's stream. */
  private serially(key: string, work: () => Promise<void>): Promise<void> {
    const previous = this.queues.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    this.queues.set(key, next);
    void next.finally(() => {
      if (this.queues.get(key) === next) this.queues.delete(key);
    });
    return next;
  }

  /** Ack only after the work (and its commands) succeeded; otherwise redeliver with backoff, or dead-letter. */
  private async settle(delivery: Delivery, taskId: string | null, work: () => Promise<void>): Promise<void> {
    try {
      await work();
      delivery.ack();
    } catch (error) {
      await this.failed(delivery, taskId, error);
    }
  }

  private async failed(delivery: Delivery, taskId: string | null, error: unknown): Promise<void> {
    const text = errorText(error);
    const maxDeliver = this.options.maxDeliver ?? 5;
    if (delivery.deliveryCount < maxDeliver) {
      this.report(error, `${delivery.subject} #${delivery.streamSequence} (delivery ${delivery.deliveryCount} of ${maxDeliver})`);
      delivery.nak(backoffDelayMs(delivery.deliveryCount, this.options.redeliveryBackoff ?? { baseMs: 200, maxMs: 5_000 }, this.random));
      return;
    }
    try {
      await this.options.bus.deadLetter(delivery, text);
      if (taskId) {
        await this.send(taskId, { type: "FailTask", taskId, code: "poison_message", reason: text.slice(0, 4000) || "poison message", at: this.iso() }, {
          correlationId: delivery.headers["Dv-Correlation-Id"] ?? uuidv7(),
          causationId: null,
        }).catch((failure: unknown) => {
          // No such task (a forged message): the dead letter is the record.
          if ((failure as { code?: unknown }).code !== "task_not_found") throw failure;
        });
      }
      this.counters.deadLettered += 1;
      delivery.term(text);
    } catch (deadLetterError) {
      this.report(deadLetterError, `dead-lettering ${delivery.subject} #${delivery.streamSequence}`);
      delivery.nak(1_000);
    }
  }

  private async handleTaskEvent(message: ParsedEvent): Promise<void> {
    const task = await this.loadTask(message.taskId);
    if (!task) throw new Error(`task ${message.taskId} has an event ${message.event.type} but no stream`);
    const saga = this.sagas.get(task.kind);
    if (!saga) return; // another runtime's task kind
    const now = this.now();
    const actions = reactToTaskEvent(saga, message.event, task, now);
    await this.perform(saga, task, actions, { correlationId: message.correlationId, causationId: message.id });
  }

  private async handleResult(result: WorkResultMessage, correlationId: string): Promise<void> {
    const task = await this.loadTask(result.taskId);
    if (!task) throw new Error(`result ${result.requestId} names task ${result.taskId}, which does not exist`);
    const meta = { correlationId, causationId: null };
    const saga = this.sagas.get(task.kind);
    const step = task.steps.find((s) => s.name === result.step);
    const attempt = Math.max(1, step?.attemptsInBudget ?? 1);
    const when = retryAt(this.now(), attempt, this.options.retryBackoff ?? DEFAULT_BACKOFF, this.random);
    const commands = decideResult(saga ?? { kind: task.kind, steps: {} }, task, result, { at: this.iso(), retryAt: when.toISOString() });
    for (const command of commands) await this.send(task.taskId, command, meta);
    if (result.kind === "progress") return;
    await forgetWork(this.options.pool, result.requestId);
  }

  // --- actions -------------------------------------------------------------------------------

  private async perform(
    saga: TaskSaga<Deps>,
    task: ExistingTask,
    actions: readonly SagaAction[],
    meta: { correlationId: string; causationId: string | null },
  ): Promise<void> {
    const pool = this.options.pool;
    for (const action of actions) {
      switch (action.type) {
        case "command":
          await this.send(task.taskId, action.command, meta);
          break;
        case "publish-work":
          await trackWork(pool, {
            requestId: action.requestId,
            taskId: task.taskId,
            step: action.step,
            service: action.service,
            action: action.action,
            datacenter: action.datacenter,
            requestedAt: this.now(),
          });
          await this.options.bus.publishWork({
            requestId: action.requestId,
            taskId: task.taskId,
            step: action.step,
            attempt: action.attempt,
            service: action.service,
            action: action.action,
            datacenter: action.datacenter,
            payload: action.payload,
            correlationId: meta.correlationId,
            requestedAt: this.iso(),
          });
          this.counters.workPublished += 1;
          break;
        case "check-wait": {
          const definition = saga.steps[action.step];
          if (!definition || !isWaitStep(definition)) throw new Error(`saga ${saga.kind}: step ${action.step} is not a wait step`);
          let output: Record<string, unknown> | null;
          try {
            output = await definition.check(task, this.options.deps as Deps);
          } catch (error) {
            // The fact came and says no (the installer reported failure): the task fails with its words.
            if (!isDomainError(error)) throw error;
            await this.send(task.taskId, { type: "FailTask", taskId: task.taskId, code: error.code.slice(0, 100), reason: `step ${action.step}: ${error.message}`.slice(0, 4000), at: this.iso() }, meta);
            break;
          }
          if (output) await this.send(task.taskId, { type: "CompleteStep", taskId: task.taskId, step: action.step, output, at: this.iso() }, meta);
          else await this.send(task.taskId, { type: "ReportProgress", taskId: task.taskId, step: action.step, percent: 0, message: definition.waitingFor.slice(0, 500), at: this.iso() }, meta);
          break;
        }
        case "run-step": {
          const definition = saga.steps[action.step];
          if (!definition || !isInlineStep(definition)) throw new Error(`saga ${saga.kind}: step ${action.step} is not an inline step`);
          let output: Record<string, unknown>;
          try {
            output = (await definition.run(task, this.options.deps as Deps)) ?? {};
          } catch (error) {
            // A business rule said no (the project was archived meanwhile): retrying cannot help, the task fails with the rule's words.
            if (!isDomainError(error)) throw error;
            await this.send(task.taskId, { type: "FailTask", taskId: task.taskId, code: error.code.slice(0, 100), reason: `step ${action.step}: ${error.message}`.slice(0, 4000), at: this.iso() }, meta);
            break;
          }
          await this.send(task.taskId, { type: "CompleteStep", taskId: task.taskId, step: action.step, output, at: this.iso() }, meta);
          break;
        }
        case "schedule":
          await scheduleTimer(pool, task.taskId, action.timer);
          break;
        case "forget-task":
          await forgetTask(pool, task.taskId);
          this.scopes.delete(task.taskId); // a late message loads it again
          break;
        case "forget-work":
          await forgetWork(pool, action.requestId);
          break;
        case "cancel-work":
          await this.options.bus.publishCancel(action.service, { requestId: action.requestId, reason: action.reason });
          break;
        case "on-failed":
          await saga.onFailed?.(task, this.options.deps as Deps);
          break;
        case "compensate":
          for (const name of action.steps) await saga.steps[name]?.compensate?.(task, this.options.deps as Deps);
          break;
      }
    }
  }

  /** Sends one task command under the task's own scope. */
  private async send(taskId: string, command: TaskCommandInput, meta: { correlationId: string; causationId: string | null }): Promise<void> {
    const scope = this.scopes.get(taskId) ?? (await this.loadTask(taskId).then((task) => (task ? this.scopes.get(taskId) : undefined)));
    if (!scope) {
      const error = new Error(`task ${taskId} does not exist`);
      throw Object.assign(error, { code: "task_not_found" });
    }
    await executeTaskCommand(
      this.options.store,
      command,
      { actor: SAGA_ACTOR, correlationId: meta.correlationId, causationId: meta.causationId, scope, occurredAt: this.now() },
      { maxRetries: 10 },
    );
  }

  private async loadTask(taskId: string): Promise<ExistingTask | null> {
    const loaded = await loadStream<TaskEvent>(this.options.store, taskStreamId(taskId), taskEventSchemas);
    const state = fold(taskDecider, loaded.events);
    if (!state.exists) return null;
    if (!this.scopes.has(taskId)) this.scopes.set(taskId, taskEnvelopeScope(state.scope));
    return state;
  }

  // --- timers --------------------------------------------------------------------------------

  private async timerLoop(): Promise<void> {
    const poll = this.options.timerPollMs ?? 250;
    while (this.running) {
      try {
        let fired: number;
        do {
          fired = await fireDueTimers(
            this.options.pool,
            this.now(),
            50,
            (timer) => this.fire(timer),
            (attempts) => backoffDelayMs(attempts, { baseMs: 1_000, maxMs: 60_000 }, this.random) + 100,
            (timer, error) => this.report(error, `timer ${timer.kind} of task ${timer.taskId}`),
          );
          this.counters.timersFired += fired;
        } while (fired > 0 && this.running);
      } catch (error) {
        this.report(error, "timer loop");
      }
      await this.sleep(poll);
    }
  }

  private async fire(timer: DueTimer): Promise<void> {
    const task = await this.loadTask(timer.taskId);
    if (!task || isTerminal(task)) return;
    const meta = { correlationId: `timer:${timer.taskId}:${timer.kind}:${timer.key}`, causationId: null };
    if (timer.kind === "deadline") {
      await this.send(task.taskId, { type: "ExpireDeadline", taskId: task.taskId, at: this.iso() }, meta);
      return;
    }
    const saga = this.sagas.get(task.kind);
    if (!saga) return;
    const step = typeof timer.payload.step === "string" ? timer.payload.step : timer.key;
    await this.perform(saga, task, reactToRetryTimer(saga, task, step, this.now()), meta);
  }

  // --- health --------------------------------------------------------------------------------

  private noteHeartbeat(raw: Heartbeat): void {
    const heartbeat = HeartbeatSchema.safeParse(raw);
    if (!heartbeat.success) return;
    const key = `${heartbeat.data.service}@${heartbeat.data.datacenter}`;
    const at = this.now(); // our clock: a worker's skewed clock must not make it look alive or dead
    const previous = this.lastSeen.get(key);
    if (!previous || previous < at) this.lastSeen.set(key, at);
  }

  private async healthLoop(): Promise<void> {
    const policy = this.options.health ?? DEFAULT_HEALTH;
    while (this.running) {
      await this.sleep(Math.max(50, Math.floor(policy.heartbeatIntervalMs / 2)));
      if (!this.running) break;
      try {
        await this.checkHealth(policy);
      } catch (error) {
        this.report(error, "health check");
      }
    }
  }

  /** Blocks tasks waiting on a worker that went quiet; unblocks those whose worker is back. Exposed for tests. */
  async checkHealth(policy: HealthPolicy = this.options.health ?? DEFAULT_HEALTH): Promise<void> {
    const outstanding = await listOutstandingWork(this.options.pool);
    const now = this.now();
    const done = new Set<string>();
    for (const work of outstanding) {
      const key = `${work.taskId}|${work.service}@${work.datacenter}`;
      if (done.has(key)) continue;
      done.add(key);
      const health = workerHealth({
        service: work.service,
        datacenter: work.datacenter,
        lastSeen: this.lastSeen.get(`${work.service}@${work.datacenter}`) ?? null,
        watchingSince: this.watchingSince,
        now,
        policy,
      });
      const dependency = workerDependency(work.service, work.datacenter);
      const meta = { correlationId: `health:${work.service}@${work.datacenter}`, causationId: null };
      try {
        if (!health.up && !work.blocked) {
          await this.serially(work.taskId, () =>
            this.send(work.taskId, { type: "BlockTask", taskId: work.taskId, dependency, kind: "hard", reason: health.reason, at: now.toISOString() }, meta),
          );
          await markBlocked(this.options.pool, work.taskId, work.service, work.datacenter, true);
        } else if (health.up && work.blocked) {
          await this.serially(work.taskId, () => this.send(work.taskId, { type: "UnblockTask", taskId: work.taskId, dependency, at: now.toISOString() }, meta));
          await markBlocked(this.options.pool, work.taskId, work.service, work.datacenter, false);
        }
      } catch (error) {
        if ((error as { code?: string }).code === "task_not_found") await forgetTask(this.options.pool, work.taskId);
        else this.report(error, `health of task ${work.taskId}`);
      }
    }
  }

  // --- helpers -------------------------------------------------------------------------------

  private now(): Date {
    return this.options.clock ? this.options.clock() : new Date();
  }

  private iso(): string {
    return this.now().toISOString();
  }

  private readonly random = (): number => (this.options.random ? this.options.random() : Math.random());

  private report(error: unknown, context: string): void {
    this.options.onError?.(error, context);
  }

  private sleep(ms: number): Promise<void> {
    const signal = this.stopController.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

/** A relayed event (adapters/nats/relay.ts RelayedEvent) as a trigger sees it; throws when it is not one. */
export function parseTriggerEvent(delivery: Pick<Delivery, "data">): TriggerEvent {
  const body = JSON.parse(new TextDecoder().decode(delivery.data)) as Record<string, unknown>;
  for (const field of ["id", "type", "streamId", "occurredAt"] as const) {
    if (typeof body[field] !== "string" || !body[field]) throw new Error(`relayed event without ${field}`);
  }
  const id = body.id as string;
  return {
    id,
    type: body.type as string,
    streamId: body.streamId as string,
    occurredAt: body.occurredAt as string,
    correlationId: typeof body.correlationId === "string" && body.correlationId ? body.correlationId : id,
    data: body.data,
  };
}

/** A relayed task event (adapters/nats/relay.ts RelayedEvent) as the engine needs it; throws when it is not one. */
export function parseTaskEvent(delivery: Pick<Delivery, "data">): ParsedEvent {
  const body = JSON.parse(new TextDecoder().decode(delivery.data)) as { id?: unknown; type?: unknown; data?: unknown; correlationId?: unknown };
  if (typeof body.type !== "string" || !(body.type in taskEventSchemas)) throw new Error(`not a task event: type ${JSON.stringify(body.type)}`);
  const schema = taskEventSchemas[body.type as keyof typeof taskEventSchemas].schema;
  const data = schema.parse(body.data) as { taskId: string };
  if (typeof body.id !== "string") throw new Error("task event without an id");
  return {
    id: body.id,
    correlationId: typeof body.correlationId === "string" && body.correlationId ? body.correlationId : body.id,
    event: { type: body.type, data } as TaskEvent,
    taskId: data.taskId,
  };
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
