import type pg from "pg";
import { setTimeout as wait } from "node:timers/promises";
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
import { ConcurrencyError } from "../../adapters/eventstore/errors.ts";
import { appendHeld, decideHeld, loadHeld, type HeldDecision, type HeldStream } from "../../commands/pipeline.ts";
import { executeTaskCommand, taskEnvelopeScope, taskHandler } from "../../commands/task/index.ts";
import type { Actor, Scope } from "../../domain/shared/envelope.ts";
import { isDomainError } from "../../domain/shared/errors.ts";
import type { TaskCommand, TaskCommandInput } from "../../domain/task/commands.ts";
import { taskDecider } from "../../domain/task/decider.ts";
import { taskEventSchemas, type TaskEvent } from "../../domain/task/events.ts";
import { isTerminal, type ExistingTask, type TaskState } from "../../domain/task/state.ts";
import { taskStreamId } from "../../domain/task/stream.ts";
import { DEFAULT_BACKOFF, retryAt, backoffDelayMs, type BackoffPolicy } from "./backoff.ts";
import { decideResult, reactToRetryTimer, reactToTaskEvent, reactToWaitEvent, requestWorkCommand, type SagaAction } from "./engine.ts";
import { DEFAULT_HEALTH, workerDependency, workerHealth, workerLocation, type HealthPolicy } from "./health.ts";
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
import { TaskCache, versionNumber, type CachedTask } from "./task-cache.ts";
import { isInlineStep, isWaitStep, isWorkStep, WaitBlocked, type SagaTrigger, type TaskSaga, type TriggerEvent, type WaitCompletion, type WorkSpec } from "./types.ts";

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
  /**
   * Tasks whose folded state the runtime keeps between messages (default
   * 10 000, least recently used out; 0: read the stream for every message).
   */
  readonly taskCacheSize?: number;
}

export interface SagaRuntimeStats {
  readonly eventsHandled: number;
  readonly resultsHandled: number;
  readonly timersFired: number;
  readonly deadLettered: number;
  readonly workPublished: number;
  /** Task stream reads (a message the cached state could not serve, a timer, a health check, a retry after a conflict). */
  readonly taskLoads: number;
  /** Appends to task streams (each may carry the events of several commands). */
  readonly taskAppends: number;
  /** Relayed task events this runtime had already reacted to right after appending them: nothing to do. */
  readonly eventsAlreadyReacted: number;
}

type ParsedEvent = {
  readonly id: string;
  readonly correlationId: string;
  readonly event: TaskEvent;
  readonly taskId: string;
  /** The event's position in the task's stream (null when the message does not say). */
  readonly streamPosition: number | null;
};

type Meta = { readonly correlationId: string; readonly causationId: string | null };

/** Reactions chained in one message at most; the rest come back as relayed events. */
const MAX_CHAINED_EVENTS = 200;

/**
 * One message's work on one task: the state it decides on (the stored
 * state plus the decisions not stored yet), and the events decided in it
 * whose reaction is still to run. Decisions are stored in one append before
 * any side effect (work, timers, inline steps) and at the end.
 */
class TaskSession {
  stored: HeldStream<ExistingTask>;
  task: ExistingTask;
  pending: HeldDecision<TaskCommand, TaskEvent, TaskState>[] = [];
  pendingEvents = 0;
  readonly queue: Array<{ readonly position: number; readonly event: TaskEvent }> = [];
  readonly reacted: number[] = [];
  appended = false;
  forgotTask = false;
  /** An answered request to forget with the next trackWork (one statement), and those forgotten so far. */
  forgetOnTrack: string | null = null;
  readonly forgotten = new Set<string>();
  /** Whether the state may go into the cache when the session ends well. */
  keep = true;

  constructor(
    readonly taskId: string,
    readonly scope: Scope,
    held: HeldStream<ExistingTask>,
    /** The cache entry the state came from; null when read (or seeded) for this session. */
    readonly base: CachedTask | null,
    readonly meta: Meta,
    readonly chain: boolean,
  ) {
    this.stored = held;
    this.task = held.state;
  }

  /** The stream position the next decided event will get. */
  get nextPosition(): number {
    return versionNumber(this.stored.version) + 1 + this.pendingEvents;
  }
}

interface SessionOptions {
  /** Read the stream, whatever the cache holds. */
  readonly fresh?: boolean;
  /** The cached state must include this stream position (a relayed event's). */
  readonly atLeast?: number | null;
  /** The cached state must pass this (else read): e.g. know the request a result answers. */
  readonly usable?: (task: ExistingTask) => boolean;
  /** The state when the cache has none, instead of a read (a relayed TaskCreated at position 0). */
  readonly seed?: HeldStream<ExistingTask>;
  /** React to the session's own events right away, as their relayed copies would (default true). */
  readonly chain?: boolean;
  /** Keep the state in the cache afterwards (default true). */
  readonly cache?: boolean;
}

/**
 * Drives every task whose kind one of `sagas` declares: consumes task events
 * and worker results (durable, explicit ack after the command is stored),
 * fires durable timers, and blocks/unblocks tasks from worker heartbeats.
 * Several runtimes may run at once (consumers share the durable, timers are
 * claimed with skip locked, commands are idempotent).
 */
export class SagaRuntime<Deps = unknown> {
  private readonly sagas = new Map<string, TaskSaga<Deps>>();
  private readonly cache: TaskCache;
  private readonly lastSeen = new Map<string, Date>();
  private readonly queues = new Map<string, Promise<void>>();
  private consumptions: Consumption[] = [];
  private unsubscribeHealth: (() => void) | null = null;
  private loops: Promise<void>[] = [];
  private running = false;
  private stopController = new AbortController();
  private watchingSince = new Date(0);
  private counters = { eventsHandled: 0, resultsHandled: 0, timersFired: 0, deadLettered: 0, workPublished: 0, taskLoads: 0, taskAppends: 0, eventsAlreadyReacted: 0 };

  constructor(private readonly options: SagaRuntimeOptions<Deps>) {
    this.cache = new TaskCache(options.taskCacheSize ?? 10_000);
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
          await this.withTask(taskId, { fresh: true }, { correlationId: event.correlationId, causationId: event.id }, async (s) => {
            if (s.task.kind !== registration.saga.kind) return;
            await this.perform(registration.saga, s, reactToWaitEvent(registration.saga, s.task, registration.step));
          });
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
        // No such task (a forged message): the dead letter is the record.
        await this.withTask(taskId, { fresh: true }, { correlationId: delivery.headers["Dv-Correlation-Id"] ?? uuidv7(), causationId: null }, async (s) => {
          const saga = this.sagas.get(s.task.kind) ?? { kind: s.task.kind, steps: {} };
          await this.perform(saga, s, [{ type: "command", command: { type: "FailTask", taskId, code: "poison_message", reason: text.slice(0, 4000) || "poison message", at: this.iso() } }]);
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
    const meta = { correlationId: message.correlationId, causationId: message.id };
    const seed = message.streamPosition === 0 && message.event.type === "TaskCreated" ? seedFromCreated(message.event) : undefined;
    const session = await this.withTask(message.taskId, { atLeast: message.streamPosition, ...(seed ? { seed } : {}) }, meta, async (s) => {
      const saga = this.sagas.get(s.task.kind);
      if (!saga) {
        s.keep = false; // another runtime's task kind
        return;
      }
      if (message.streamPosition !== null && s.base?.reacted.has(message.streamPosition)) {
        this.counters.eventsAlreadyReacted += 1; // reacted to in full when this runtime appended it
        return;
      }
      await this.perform(saga, s, reactToTaskEvent(saga, message.event, s.task, this.now()));
    });
    if (!session) throw new Error(`task ${message.taskId} has an event ${message.event.type} but no stream`);
  }

  private async handleResult(result: WorkResultMessage, correlationId: string): Promise<void> {
    const meta = { correlationId, causationId: null };
    // A cached state that does not know this request as the step's current one may be behind: read.
    const usable = (task: ExistingTask) => {
      const step = task.steps.find((s) => s.name === result.step);
      return !isTerminal(task) && step?.status === "running" && step.request?.requestId === result.requestId && step.request.outstanding;
    };
    const session = await this.withTask(result.taskId, { usable }, meta, async (s) => {
      if (result.kind !== "progress") s.forgetOnTrack = result.requestId;
      const task = s.task;
      const saga = this.sagas.get(task.kind);
      const step = task.steps.find((x) => x.name === result.step);
      const attempt = Math.max(1, step?.attemptsInBudget ?? 1);
      const when = retryAt(this.now(), attempt, this.options.retryBackoff ?? DEFAULT_BACKOFF, this.random);
      const commands = decideResult(saga ?? { kind: task.kind, steps: {} }, task, result, { at: this.iso(), retryAt: when.toISOString() });
      await this.perform(saga ?? { kind: task.kind, steps: {} }, s, commands.map((command) => ({ type: "command" as const, command })));
    });
    if (!session) throw new Error(`result ${result.requestId} names task ${result.taskId}, which does not exist`);
    if (result.kind === "progress") return;
    // Unless forget-task, forget-work or the next request's trackWork already removed it.
    if (!session.forgotTask && !session.forgotten.has(result.requestId)) await forgetWork(this.options.pool, result.requestId);
  }

  // --- task sessions -------------------------------------------------------------------------

  /**
   * Runs `work` on the task's state: the cached one when it serves
   * (`options`), else read from the stream. Decisions are appended with the
   * version they were taken on; a ConcurrencyError (another writer: the API,
   * another runtime, a timer) drops the cache entry and runs `work` again on
   * a fresh read, so every decision stands on the stream as stored. Returns
   * the session, or null when the task does not exist.
   */
  private async withTask(taskId: string, options: SessionOptions, meta: Meta, work: (s: TaskSession) => Promise<void>): Promise<TaskSession | null> {
    for (let attempt = 1; ; attempt++) {
      const s = await this.open(taskId, attempt === 1 ? options : { ...options, fresh: true }, meta);
      if (!s) return null;
      try {
        await work(s);
        await this.drain(s);
        await this.flush(s);
        if (options.cache !== false && s.keep) this.keep(s);
        else if (s.appended) this.cache.delete(taskId);
        return s;
      } catch (error) {
        this.cache.delete(taskId);
        if (!(error instanceof ConcurrencyError) || attempt >= 10) throw error;
        await new Promise((resolve) => setTimeout(resolve, this.random() * Math.min(50, 5 * 2 ** attempt)));
      }
    }
  }

  private async open(taskId: string, options: SessionOptions, meta: Meta): Promise<TaskSession | null> {
    const chain = options.chain !== false;
    let entry = options.fresh ? undefined : this.cache.get(taskId);
    if (entry && options.atLeast != null && versionNumber(entry.held.version) < options.atLeast) entry = undefined;
    if (entry && options.usable && !options.usable(entry.held.state)) entry = undefined;
    if (entry) return new TaskSession(taskId, entry.scope, entry.held, entry, meta, chain);
    if (!options.fresh && options.seed) return new TaskSession(taskId, taskEnvelopeScope(options.seed.state.scope), options.seed, null, meta, chain);
    this.counters.taskLoads += 1;
    const held = await loadHeld<TaskEvent, TaskState>(this.options.store, taskHandler, taskStreamId(taskId));
    if (!held.state.exists) return null;
    return new TaskSession(taskId, taskEnvelopeScope(held.state.scope), held as HeldStream<ExistingTask>, null, meta, chain);
  }

  /**
   * Decides a command on the session's state; stored at the next flush. A
   * refused command first stores what was decided before it (as when each
   * command was appended on its own), then throws.
   */
  private async decide(s: TaskSession, command: TaskCommandInput): Promise<void> {
    let decision: HeldDecision<TaskCommand, TaskEvent, TaskState>;
    try {
      decision = decideHeld(taskHandler, command, s.task, this.context(s));
    } catch (error) {
      await this.flush(s);
      throw error;
    }
    const first = s.nextPosition;
    s.pending.push(decision);
    s.pendingEvents += decision.events.length;
    s.task = decision.state as ExistingTask;
    decision.events.forEach((event, index) => s.queue.push({ position: first + index, event }));
  }

  /** Stores the session's decisions in one append, with the version they were decided on. */
  private async flush(s: TaskSession): Promise<void> {
    if (s.pending.length === 0) return;
    const { held } = await appendHeld(this.options.store, taskHandler, taskStreamId(s.taskId), s.stored as HeldStream<TaskState>, s.pending, this.context(s));
    this.counters.taskAppends += 1;
    s.stored = { ...held, state: held.state as ExistingTask };
    s.pending = [];
    s.pendingEvents = 0;
    s.appended = true;
  }

  /**
   * Reacts to the events the session decided, in order, as their relayed
   * copies would (one at a time, each on the state after everything before
   * it): so StartStep's TaskStepStarted leads to RequestWork in the same
   * append. A reaction that fails is left to the relayed copy (it is not
   * marked as done, so it is redelivered and dead-lettered on its own).
   */
  private async drain(s: TaskSession): Promise<void> {
    const saga = this.sagas.get(s.task.kind);
    if (!s.chain || !saga) {
      s.queue.length = 0;
      return;
    }
    for (let handled = 0; s.queue.length > 0 && handled < MAX_CHAINED_EVENTS; handled++) {
      const { position, event } = s.queue.shift()!;
      try {
        await this.perform(saga, s, reactToTaskEvent(saga, event, s.task, this.now()));
        s.reacted.push(position);
      } catch (error) {
        if (error instanceof ConcurrencyError) throw error;
        this.report(error, `task ${s.taskId}: reacting to ${event.type} at ${position} right away (its relayed copy will try again)`);
      }
    }
    s.queue.length = 0;
  }

  /** The session's state into the cache, unless the cache meanwhile holds a newer one. */
  private keep(s: TaskSession): void {
    const current = this.cache.peek(s.taskId);
    if (current && current !== s.base && versionNumber(current.held.version) >= versionNumber(s.stored.version)) return;
    const reacted = new Set<number>(current && current === s.base ? current.reacted : []);
    for (const position of s.reacted) reacted.add(position);
    this.cache.set(s.taskId, { held: s.stored, scope: s.scope, reacted });
  }

  private context(s: TaskSession) {
    return { actor: SAGA_ACTOR, correlationId: s.meta.correlationId, causationId: s.meta.causationId, scope: s.scope, occurredAt: this.now() };
  }

  // --- actions -------------------------------------------------------------------------------

  /** Commands are decided on the session's state; anything else first stores what is decided, then acts. */
  private async perform(saga: TaskSaga<Deps>, s: TaskSession, actions: readonly SagaAction[]): Promise<void> {
    const pool = this.options.pool;
    const meta = s.meta;
    for (const action of actions) {
      if (action.type === "command") {
        await this.decide(s, action.command);
        continue;
      }
      await this.flush(s);
      const task = s.task;
      switch (action.type) {
        case "publish-work": {
          const forget = s.forgetOnTrack !== action.requestId ? s.forgetOnTrack : null;
          await trackWork(pool, {
            requestId: action.requestId,
            taskId: task.taskId,
            step: action.step,
            service: action.service,
            action: action.action,
            datacenter: action.datacenter,
            target: action.target,
            requestedAt: this.now(),
          }, forget ?? undefined);
          if (forget) s.forgotten.add(forget);
          s.forgetOnTrack = null;
          await this.options.bus.publishWork({
            requestId: action.requestId,
            taskId: task.taskId,
            step: action.step,
            attempt: action.attempt,
            service: action.service,
            action: action.action,
            datacenter: action.datacenter,
            ...(action.target ? { target: action.target } : {}),
            payload: action.payload,
            correlationId: meta.correlationId,
            requestedAt: this.iso(),
          });
          this.counters.workPublished += 1;
          break;
        }
        case "check-wait": {
          const definition = saga.steps[action.step];
          if (!definition || !isWaitStep(definition)) throw new Error(`saga ${saga.kind}: step ${action.step} is not a wait step`);
          let output: Record<string, unknown> | WaitBlocked | null;
          try {
            output = await definition.check(task, this.options.deps as Deps);
          } catch (error) {
            // The fact came and says no (the installer reported failure): the task fails with its words.
            if (!isDomainError(error)) throw error;
            await this.decide(s, { type: "FailTask", taskId: task.taskId, code: error.code.slice(0, 100), reason: `step ${action.step}: ${error.message}`.slice(0, 4000), at: this.iso() });
            break;
          }
          const blockedHere = task.blocked !== null && task.blocked.step === action.step;
          if (output instanceof WaitBlocked) {
            const dependency = output.dependency.slice(0, 200);
            const reason = output.reason.slice(0, 1000) || definition.waitingFor;
            if (blockedHere && task.blocked!.dependency !== dependency) await this.decide(s, { type: "UnblockTask", taskId: task.taskId, dependency: task.blocked!.dependency, at: this.iso() });
            if (task.blocked?.dependency !== dependency) await this.decide(s, { type: "BlockTask", taskId: task.taskId, dependency, kind: output.kind, reason, at: this.iso() });
            await this.decide(s, { type: "ReportProgress", taskId: task.taskId, step: action.step, percent: 0, message: `${definition.waitingFor}: ${reason}`.slice(0, 500), at: this.iso() });
            break;
          }
          if (output) {
            if (blockedHere) await this.decide(s, { type: "UnblockTask", taskId: task.taskId, dependency: task.blocked!.dependency, at: this.iso() });
            await this.decide(s, { type: "CompleteStep", taskId: task.taskId, step: action.step, output, at: this.iso() });
          } else await this.decide(s, { type: "ReportProgress", taskId: task.taskId, step: action.step, percent: 0, message: definition.waitingFor.slice(0, 500), at: this.iso() });
          break;
        }
        case "resolve-work": {
          const definition = saga.steps[action.step];
          if (!definition || !isWorkStep(definition) || !definition.resolveWork) throw new Error(`saga ${saga.kind}: step ${action.step} does not resolve its work`);
          let spec: WorkSpec;
          try {
            spec = await definition.resolveWork(task, this.options.deps as Deps);
          } catch (error) {
            // The state says the work cannot be asked for (the VM was deleted meanwhile): the task fails with the rule's words.
            if (!isDomainError(error)) throw error;
            await this.decide(s, { type: "FailTask", taskId: task.taskId, code: error.code.slice(0, 100), reason: `step ${action.step}: ${error.message}`.slice(0, 4000), at: this.iso() });
            break;
          }
          await this.decide(s, requestWorkCommand(task, action.step, spec, this.iso()));
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
            await this.decide(s, { type: "FailTask", taskId: task.taskId, code: error.code.slice(0, 100), reason: `step ${action.step}: ${error.message}`.slice(0, 4000), at: this.iso() });
            break;
          }
          await this.decide(s, { type: "CompleteStep", taskId: task.taskId, step: action.step, output, at: this.iso() });
          break;
        }
        case "schedule":
          await scheduleTimer(pool, task.taskId, action.timer);
          break;
        case "forget-task":
          await forgetTask(pool, task.taskId);
          s.forgotTask = true;
          break;
        case "forget-work":
          await forgetWork(pool, action.requestId);
          s.forgotten.add(action.requestId);
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

  /**
   * Runs inside fireDueTimers' transaction, which holds the timer's row: not
   * in the task's queue and without chained reactions (those may touch the
   * task's timers: forget-task would wait for that row forever).
   */
  private async fire(timer: DueTimer): Promise<void> {
    const meta = { correlationId: `timer:${timer.taskId}:${timer.kind}:${timer.key}`, causationId: null };
    await this.withTask(timer.taskId, { fresh: true, chain: false, cache: false }, meta, async (s) => {
      const task = s.task;
      if (isTerminal(task)) return;
      if (timer.kind === "deadline") {
        await this.decide(s, { type: "ExpireDeadline", taskId: task.taskId, at: this.iso() });
        return;
      }
      const saga = this.sagas.get(task.kind);
      if (!saga) return;
      const step = typeof timer.payload.step === "string" ? timer.payload.step : timer.key;
      await this.perform(saga, s, reactToRetryTimer(saga, task, step, this.now()));
    });
  }

  // --- health --------------------------------------------------------------------------------

  private noteHeartbeat(raw: Heartbeat): void {
    const heartbeat = HeartbeatSchema.safeParse(raw);
    if (!heartbeat.success) return;
    const key = `${heartbeat.data.service}@${workerLocation(heartbeat.data.datacenter, heartbeat.data.target)}`;
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
      const worker = `${work.service}@${workerLocation(work.datacenter, work.target)}`;
      const key = `${work.taskId}|${worker}`;
      if (done.has(key)) continue;
      done.add(key);
      const health = workerHealth({
        service: work.service,
        datacenter: work.datacenter,
        target: work.target,
        lastSeen: this.lastSeen.get(worker) ?? null,
        watchingSince: this.watchingSince,
        now,
        policy,
      });
      const dependency = workerDependency(work.service, work.datacenter, work.target);
      const meta = { correlationId: `health:${worker}`, causationId: null };
      try {
        if (!health.up && !work.blocked) {
          await this.serially(work.taskId, () =>
            this.command(work.taskId, { type: "BlockTask", taskId: work.taskId, dependency, kind: "hard", reason: health.reason, at: now.toISOString() }, meta),
          );
          await markBlocked(this.options.pool, work.taskId, work.service, work.datacenter, work.target, true);
        } else if (health.up && work.blocked) {
          await this.serially(work.taskId, () => this.command(work.taskId, { type: "UnblockTask", taskId: work.taskId, dependency, at: now.toISOString() }, meta));
          await markBlocked(this.options.pool, work.taskId, work.service, work.datacenter, work.target, false);
        }
      } catch (error) {
        if ((error as { code?: string }).code === "task_not_found") await forgetTask(this.options.pool, work.taskId);
        else this.report(error, `health of task ${work.taskId}`);
      }
    }
  }

  // --- helpers -------------------------------------------------------------------------------

  /** One command on a fresh read of the task (and what it leads to); throws code task_not_found when there is none. */
  private async command(taskId: string, command: TaskCommandInput, meta: Meta): Promise<void> {
    const session = await this.withTask(taskId, { fresh: true }, meta, async (s) => {
      const saga = this.sagas.get(s.task.kind) ?? { kind: s.task.kind, steps: {} };
      await this.perform(saga, s, [{ type: "command", command }]);
    });
    if (!session) throw Object.assign(new Error(`task ${taskId} does not exist`), { code: "task_not_found" });
  }

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

  /** Waits ms, or less when stopping (an aborted wait resolves: the loop then sees it is stopping). */
  private sleep(ms: number): Promise<void> {
    return wait(ms, undefined, { signal: this.stopController.signal }).catch(() => undefined);
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
  const body = JSON.parse(new TextDecoder().decode(delivery.data)) as { id?: unknown; type?: unknown; data?: unknown; correlationId?: unknown; streamPosition?: unknown };
  if (typeof body.type !== "string" || !(body.type in taskEventSchemas)) throw new Error(`not a task event: type ${JSON.stringify(body.type)}`);
  const schema = taskEventSchemas[body.type as keyof typeof taskEventSchemas].schema;
  const data = schema.parse(body.data) as { taskId: string };
  if (typeof body.id !== "string") throw new Error("task event without an id");
  return {
    id: body.id,
    correlationId: typeof body.correlationId === "string" && body.correlationId ? body.correlationId : body.id,
    event: { type: body.type, data } as TaskEvent,
    taskId: data.taskId,
    streamPosition: typeof body.streamPosition === "number" && Number.isInteger(body.streamPosition) && body.streamPosition >= 0 ? body.streamPosition : null,
  };
}

/** A task's state from its TaskCreated alone (position 0): what a read would fold if nothing followed it yet. */
function seedFromCreated(event: TaskEvent): HeldStream<ExistingTask> | undefined {
  const state = taskDecider.evolve(taskDecider.initialState, event);
  return state.exists ? { state, version: 0, position: null } : undefined;
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
