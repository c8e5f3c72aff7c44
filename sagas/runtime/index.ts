/** The saga runtime: process managers declared as data, driven over NATS (sagas/README.md). */
export {
  defineSaga,
  isInlineStep,
  isWaitStep,
  isWorkStep,
  sagaPlan,
  waitBlocked,
  WaitBlocked,
  type InlineStep,
  type SagaStep,
  type SagaTrigger,
  type TaskSaga,
  type TriggerEvent,
  type WaitCompletion,
  type WaitStep,
  type WorkFailure,
  type WorkSpec,
  type WorkStep,
} from "./types.ts";
export { advance, decideResult, reactToRetryTimer, reactToTaskEvent, reactToWaitEvent, requestWork, requestWorkCommand, type SagaAction, type TimerKind, type TimerSpec } from "./engine.ts";
export { backoffCeilingMs, backoffDelayMs, retryAt, DEFAULT_BACKOFF, type BackoffPolicy } from "./backoff.ts";
export { DEFAULT_HEALTH, healthBoundMs, workerDependency, workerHealth, workerLocation, type HealthPolicy, type WorkerHealth } from "./health.ts";
export { SagaRuntime, SAGA_ACTOR, parseTaskEvent, type SagaRuntimeOptions, type SagaRuntimeStats } from "./runtime.ts";
