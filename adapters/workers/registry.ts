import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsNamespace } from "../nats/namespace.ts";
import type { WorkHandler } from "./worker.ts";

/**
 * Which handlers a `dv worker --service S` runs. A service plugs in by
 * registering a factory (issue 5: maskin registers its BMC/QEMU handlers);
 * the factory gets the worker's datacenter and environment so it can open
 * what it needs (driver connections, credentials references).
 */
export interface WorkerServiceContext {
  readonly datacenter: string;
  readonly env: NodeJS.ProcessEnv;
  /** The worker's routing target (`dv worker --host`: the hypervisor host it runs on), when it has one. */
  readonly target?: string;
  /** The worker's NATS connection and namespace, for a service that also serves core request/reply (hypervisor console). */
  readonly nats?: { readonly nc: NatsConnection; readonly namespace: NatsNamespace };
}

export interface WorkerServiceOptions {
  /** Redelivered when not acked within this time (startWorker's ackWaitMs; kept alive while a handler runs). */
  readonly ackWaitMs?: number;
  /** Take only the work routed to this target (startWorker's `target`), e.g. the hypervisor worker of one host. */
  readonly target?: string;
}

export interface WorkerService {
  readonly service: string;
  readonly description: string;
  handlers(context: WorkerServiceContext): Promise<Record<string, WorkHandler>> | Record<string, WorkHandler>;
  /**
   * The service's own worker settings (startWorker's), when its defaults do
   * not fit: e.g. a shorter ack wait so that a request a killed worker left
   * unacked is redelivered soon. Settings given to startWorkers explicitly win.
   */
  workerOptions?(context: WorkerServiceContext): WorkerServiceOptions;
  /** Closes what handlers() opened. */
  close?(): Promise<void>;
}

const services = new Map<string, WorkerService>();

export function registerWorkerService(service: WorkerService): void {
  if (services.has(service.service)) throw new Error(`worker service ${service.service} is registered twice`);
  services.set(service.service, service);
}

export function workerService(name: string): WorkerService | undefined {
  return services.get(name);
}

export function workerServices(): WorkerService[] {
  return [...services.values()].sort((a, b) => a.service.localeCompare(b.service));
}

/** Built in: `noop` answers every `noop.cmd.ping` with what it got; for wiring checks. */
registerWorkerService({
  service: "noop",
  description: "answers action 'ping' with its payload (a wiring check)",
  handlers: () => ({
    ping: async (request) => ({ echo: request.payload }),
  }),
});
