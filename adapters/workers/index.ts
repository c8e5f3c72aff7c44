/** The worker runtime and the saga runtime's messaging over NATS JetStream (sagas/README.md). */
export * from "./port.ts";
export { startWorker, WorkError, workerDurable, type RunningWorker, type StartWorkerOptions, type WorkContext, type WorkHandler } from "./worker.ts";
export { JetStreamSagaBus, publishDeadLetter, type JetStreamSagaBusOptions } from "./saga-bus.ts";
export { ensureDurableConsumer, runDurableConsumer, type DurableConsumerSpec } from "./consume.ts";
export { registerWorkerService, workerService, workerServices, type WorkerService, type WorkerServiceContext } from "./registry.ts";
