import type { StepPlan, TaskCommandInput } from "../../domain/task/commands.ts";
import type { ExistingTask } from "../../domain/task/state.ts";

/** Where a work step's request goes and what it carries. */
export interface WorkSpec {
  readonly service: string;
  readonly action: string;
  readonly datacenter: string;
  /** One worker within the datacenter (a hypervisor host id); absent: any worker of the service there. */
  readonly target?: string;
  readonly payload?: Record<string, unknown>;
}

/** A worker's failure as a work step sees it. */
export interface WorkFailure {
  readonly code: string;
  readonly message: string;
}

/**
 * A step done by a worker near the hardware, over DV_WORK. Exactly one of:
 * - `work`, pure: it reads the task (its input; earlier outputs are not kept);
 * - `resolveWork`, when where the work goes or what it carries was decided by
 *   an earlier step and lives in the resource's state (the hypervisor a VM was
 *   placed on): read through deps each time the work is requested, so a
 *   retry goes where the state says now. A DomainError it throws fails the task.
 */
export interface WorkStep<Deps> {
  readonly title: string;
  work?(task: ExistingTask): WorkSpec;
  resolveWork?(task: ExistingTask, deps: Deps): Promise<WorkSpec>;
  /**
   * The dependency a failure names, e.g. `bmc_unreachable` -> "bmc <hostId>"
   * (used when the worker's result does not name one itself): the task is
   * blocked on it (hard, reason = the error) while retries go on, and
   * unblocked by the step's next answer that does not name it.
   */
  dependencyOf?(failure: WorkFailure, task: ExistingTask): string | null;
  /** Undo after a cancellation (in-process, idempotent). */
  compensate?(task: ExistingTask, deps: Deps): Promise<void>;
}

/** A step done in-process by an idempotent command (e.g. create an environment); may run more than once. */
export interface InlineStep<Deps> {
  readonly title: string;
  run(task: ExistingTask, deps: Deps): Promise<Record<string, unknown> | void>;
  compensate?(task: ExistingTask, deps: Deps): Promise<void>;
}

/** An event that may complete a wait step: which task it concerns (null: none). */
export interface WaitCompletion<Deps = unknown> {
  readonly eventType: string;
  /** The prefix of the streams the event lives in (e.g. "maskin-host-"): it decides the event's subject. */
  readonly streamPrefix: string;
  /** The task the event may concern; may read state through deps (a host's current provisioning task). */
  taskIdOf(event: TriggerEvent, deps: Deps): string | null | Promise<string | null>;
}

/**
 * A step that waits for a fact from outside (a host fetched its netboot
 * script, the installer reported). When the step starts the engine runs
 * `check`, which reads the real state (a fact that arrived before the step
 * started counts): output completes the step, null reports progress
 * `waitingFor`. Each `completesOn` event (a durable consumer, like a
 * trigger) runs `check` again for the task it names. A `DomainError` thrown
 * by `check` fails the task with its words (the installer reported failure).
 * The task's deadline bounds the wait; its reason then names `waitingFor`.
 */
export interface WaitStep<Deps> {
  readonly title: string;
  /** Shown as the step's progress while it waits, e.g. "waiting for netboot". */
  readonly waitingFor: string;
  check(task: ExistingTask, deps: Deps): Promise<Record<string, unknown> | WaitBlocked | null>;
  readonly completesOn: readonly WaitCompletion<Deps>[];
  compensate?(task: ExistingTask, deps: Deps): Promise<void>;
}

/**
 * What a wait step's check returns when the wait is for a dependency that is
 * missing now (no capacity anywhere): the task is blocked on it (kind, reason)
 * while the step keeps waiting; the check that returns an output unblocks the
 * task and completes the step. Made with `waitBlocked`.
 */
export class WaitBlocked {
  constructor(
    readonly dependency: string,
    readonly kind: "hard" | "soft",
    readonly reason: string,
  ) {}
}

export function waitBlocked(blocked: { readonly dependency: string; readonly kind: "hard" | "soft"; readonly reason: string }): WaitBlocked {
  return new WaitBlocked(blocked.dependency, blocked.kind, blocked.reason);
}

export type SagaStep<Deps> = WorkStep<Deps> | InlineStep<Deps> | WaitStep<Deps>;

/** A fact from the log as a trigger sees it (the relayed envelope). */
export interface TriggerEvent {
  readonly id: string;
  readonly type: string;
  readonly streamId: string;
  readonly correlationId: string;
  readonly occurredAt: string;
  readonly data: unknown;
}

/**
 * Starts tasks from facts that are not task events (a project was created
 * asking for a bootstrap): `start` returns the CreateTask for the event, or
 * null when the event needs no task. CreateTask is idempotent by task id, so
 * `start` must derive the id from the event (redelivery creates nothing twice).
 */
export interface SagaTrigger {
  /** Names the trigger's durable consumer: lowercase a-z, 0-9 and '-'. */
  readonly name: string;
  readonly eventType: string;
  /** The prefix of the streams the event lives in (e.g. "tenant-"): it decides the event's subject. */
  readonly streamPrefix: string;
  start(event: TriggerEvent, now: Date): TaskCommandInput | null;
}

/**
 * A process manager declared as data: which task kind it drives, its steps in
 * order (the object's key order is the plan's order) and what starts it.
 */
export interface TaskSaga<Deps = unknown> {
  readonly kind: string;
  readonly steps: Readonly<Record<string, SagaStep<Deps>>>;
  readonly triggers?: readonly SagaTrigger[];
  /**
   * Runs (in-process, idempotent; maybe more than once) when the task has
   * failed, e.g. to record on the resource that its operation failed so
   * that it can be released. Not run on cancellation: that is `compensate`.
   */
  onFailed?(task: ExistingTask, deps: Deps): Promise<void>;
}

export function isWorkStep<Deps>(step: SagaStep<Deps>): step is WorkStep<Deps> {
  const work = step as WorkStep<Deps>;
  return typeof work.work === "function" || typeof work.resolveWork === "function";
}

export function isWaitStep<Deps>(step: SagaStep<Deps>): step is WaitStep<Deps> {
  return typeof (step as WaitStep<Deps>).check === "function" && Array.isArray((step as WaitStep<Deps>).completesOn);
}

export function isInlineStep<Deps>(step: SagaStep<Deps>): step is InlineStep<Deps> {
  return typeof (step as InlineStep<Deps>).run === "function";
}

/** The `steps` of a CreateTask for this saga. */
export function sagaPlan(saga: TaskSaga<any>): StepPlan[] {
  return Object.entries(saga.steps).map(([name, step]) => ({ name, title: step.title }));
}

export function defineSaga<Deps = unknown>(saga: TaskSaga<Deps>): TaskSaga<Deps> {
  for (const name of Object.keys(saga.steps)) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new RangeError(`saga ${saga.kind}: step name ${JSON.stringify(name)} must be lowercase a-z, 0-9 and '-'`);
  }
  if (Object.keys(saga.steps).length === 0) throw new RangeError(`saga ${saga.kind} has no steps`);
  for (const [name, step] of Object.entries(saga.steps)) {
    const kinds = [isWorkStep(step), isWaitStep(step), isInlineStep(step)].filter(Boolean).length;
    if (kinds !== 1) throw new RangeError(`saga ${saga.kind}: step ${name} must be exactly one of work (work or resolveWork), wait (check + completesOn) or inline (run)`);
    const work = step as WorkStep<Deps>;
    if (typeof work.work === "function" && typeof work.resolveWork === "function") throw new RangeError(`saga ${saga.kind}: step ${name} declares both work and resolveWork`);
  }
  for (const trigger of saga.triggers ?? []) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(trigger.name)) throw new RangeError(`saga ${saga.kind}: trigger name ${JSON.stringify(trigger.name)} must be lowercase a-z, 0-9 and '-'`);
  }
  return saga;
}
