import type { StepPlan } from "../../domain/task/commands.ts";
import type { ExistingTask } from "../../domain/task/state.ts";

/** Where a work step's request goes and what it carries. */
export interface WorkSpec {
  readonly service: string;
  readonly action: string;
  readonly datacenter: string;
  readonly payload?: Record<string, unknown>;
}

/** A step done by a worker near the hardware, over DV_WORK. `work` is pure: it reads the task (its input, earlier outputs are not kept). */
export interface WorkStep<Deps> {
  readonly title: string;
  work(task: ExistingTask): WorkSpec;
  /** Undo after a cancellation (in-process, idempotent). */
  compensate?(task: ExistingTask, deps: Deps): Promise<void>;
}

/** A step done in-process by an idempotent command (e.g. create an environment); may run more than once. */
export interface InlineStep<Deps> {
  readonly title: string;
  run(task: ExistingTask, deps: Deps): Promise<Record<string, unknown> | void>;
  compensate?(task: ExistingTask, deps: Deps): Promise<void>;
}

export type SagaStep<Deps> = WorkStep<Deps> | InlineStep<Deps>;

/**
 * A process manager declared as data: which task kind it drives and its
 * steps in order (the object's key order is the plan's order).
 */
export interface TaskSaga<Deps = unknown> {
  readonly kind: string;
  readonly steps: Readonly<Record<string, SagaStep<Deps>>>;
}

export function isWorkStep<Deps>(step: SagaStep<Deps>): step is WorkStep<Deps> {
  return typeof (step as WorkStep<Deps>).work === "function";
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
  return saga;
}
