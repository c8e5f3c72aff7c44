import type { FastifyInstance } from "fastify";
import { serializerCompiler } from "fastify-type-provider-zod";
import type pg from "pg";
import { enforceAccess } from "../http/access.ts";
import { registerIdempotency, type IdempotencyOptions } from "../http/idempotency.ts";
import { zodValidatorCompiler } from "../http/validation.ts";
import type { RestDeps } from "./command.ts";
import { dlqRoutes, type DlqRouteDeps } from "./dlq.ts";
import { environmentRoutes } from "./environments.ts";
import { MaskinReadModel } from "../read/maskin.ts";
import { hostActionRoutes } from "./hosts-actions.ts";
import { inventoryRoutes, type InventoryRouteDeps } from "./inventory.ts";
import { projectRoutes } from "./projects.ts";
import { VmInfraReadModel } from "../read/vm-infra.ts";
import { diskImageRoutes } from "./disk-images.ts";
import { hypervisorRoutes } from "./hypervisors.ts";
import { imageRoutes } from "./images.ts";
import { quotaRoutes } from "./quotas.ts";
import { taskRoutes, type TaskRouteDeps } from "./tasks.ts";
import { tenantRoutes } from "./tenants.ts";
import { VmReadModel } from "../read/vms.ts";
import { vmRoutes, type VmConsoleReader } from "./vms.ts";

export interface RestOptions extends RestDeps {
  readonly pool: pg.Pool;
  readonly idempotency?: IdempotencyOptions;
  /** The tasks read model and read-your-writes on it (/v1/tasks). */
  readonly tasks: Pick<TaskRouteDeps, "read" | "ryw">;
  /** The inventory read model, read-your-writes on it, and where imported passwords go (/v1/inventory, /v1/hosts, ...). */
  readonly inventory: Pick<InventoryRouteDeps, "read" | "ryw" | "secrets">;
  /** DV_DLQ for operators (/v1/dlq); absent: those routes answer 503 dlq_unavailable. */
  readonly deadLetters?: DlqRouteDeps["deadLetters"];
  /** VM serial console reads over NATS (requestVmConsole); absent: GET /v1/vms/{id}/console answers 503. */
  readonly vmConsole?: VmConsoleReader | null;
}

/**
 * The REST API under /v1, in its own encapsulated context: zod compilers for
 * its schemas (other plugins keep fastify's defaults), JSON bodies only,
 * access declared on every route and enforced before validation, and
 * Idempotency-Key on POST.
 */
export async function restApi(app: FastifyInstance, options: RestOptions): Promise<void> {
  app.setValidatorCompiler(zodValidatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.removeContentTypeParser("text/plain");
  enforceAccess(app);
  registerIdempotency(app, options.pool, options.idempotency);

  const deps: RestDeps = { store: options.store, read: options.read, ryw: options.ryw, metrics: options.metrics };
  await app.register(tenantRoutes, deps);
  await app.register(projectRoutes, deps);
  await app.register(environmentRoutes, deps);
  const vmInfra = new VmInfraReadModel(options.pool);
  await app.register(quotaRoutes, { ...deps, vmUsage: vmInfra });
  await app.register(taskRoutes, { store: options.store, metrics: options.metrics, ...options.tasks });
  await app.register(inventoryRoutes, { store: options.store, metrics: options.metrics, ...options.inventory });
  await app.register(hostActionRoutes, { store: options.store, metrics: options.metrics, tenancy: options.read, inventory: options.inventory.read, maskin: new MaskinReadModel(options.pool), ryw: options.tasks.ryw });
  await app.register(hypervisorRoutes, { store: options.store, read: vmInfra, metrics: options.metrics });
  await app.register(imageRoutes, { store: options.store, read: vmInfra, metrics: options.metrics });
  await app.register(diskImageRoutes, { store: options.store, read: vmInfra, metrics: options.metrics });
  await app.register(vmRoutes, { store: options.store, metrics: options.metrics, tenancy: options.read, vms: new VmReadModel(options.pool), ryw: options.tasks.ryw, console: options.vmConsole ?? null });
  await app.register(dlqRoutes, { deadLetters: options.deadLetters ?? null });
}
