import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { v7 as uuidv7 } from "uuid";
import { z } from "zod";
import { executeDiskImageCommand, loadDiskImage } from "../../commands/maskin/vm/index.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { isPlatformAdmin } from "../auth/policy.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { actorOf } from "../http/access.ts";
import { decodeCursor, encodeCursor, PageQuerySchema, pageSchema } from "../http/pagination.ts";
import type { ApiMetrics } from "../observability/metrics.ts";
import {
  canReadVmInfra,
  diskImageReferenceView,
  diskImageView,
  storedStatus,
  visibleReferences,
  vmVisibility,
  type VmInfraReadModel,
} from "../read/vm-infra.ts";
import { idempotencyHeader } from "./headers.ts";
import { apiSchemas } from "./schemas.ts";
import { forbidden, notFound, platformContext, Timestamp } from "./vm-infra-common.ts";

/**
 * Disk images (stream `maskin-disk-<datacenter>-<name>`): created for a VM
 * from a template (image version, size, storage class) and shared by the
 * VMs that reference them; a disk image is removed only when its last
 * reference is gone.
 *
 * Who sees what: platform readers see every disk image and every reference.
 * A tenant caller sees a disk image while a VM of a project it can see
 * references it, and of its references only those of such VMs (a disk image
 * of another tenant, or one no VM of theirs references any more, answers
 * 404 like a missing one). Only platform-admins delete.
 *
 * DELETE is synchronous: 200 `deleted` when no VM references it, 202
 * `terminating` when VMs still do (it is removed when the last reference is
 * released, and takes no new references meanwhile); again on a terminating
 * one: 202, nothing changes. why-not-deleted lists the referencing VMs and
 * the `DiskImageReferenced` event that added each.
 * Reads come from the maskin_vms read model (eventually consistent).
 */
export interface DiskImageRouteDeps {
  readonly store: CommandStore;
  readonly read: VmInfraReadModel;
  readonly metrics: ApiMetrics;
  readonly now?: () => Date;
}

const TAGS = ["disk-images"];

const TemplateSchema = z.object({ image: z.object({ name: z.string(), version: z.string() }), sizeGiB: z.number().int(), storageClass: z.string() });
export const DiskImageSchema = z.object({
  datacenter: z.string(),
  name: z.string(),
  status: z.enum(["active", "terminating", "deleted"]),
  generation: z.number().int().describe("Grows when a deleted name is created again"),
  template: TemplateSchema,
  references: z.number().int().describe("VMs referencing it now"),
  deletionRequestedAt: Timestamp.nullable(),
  deletedAt: Timestamp.nullable(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
apiSchemas.add(DiskImageSchema, { id: "DiskImage" });

const ReferenceSchema = z.object({
  vmId: z.string(),
  vmName: z.string().nullable(),
  tenantId: z.string().nullable(),
  projectId: z.string().nullable(),
  mode: z.string().describe("CreateIfNotExist or FailIfNotExist"),
  warnings: z.array(z.object({ field: z.string(), existing: z.string(), requested: z.string() })).describe("Template fields that differed (the existing disk image won)"),
  addedBy: z.object({ eventId: z.string(), position: z.string(), taskId: z.string(), at: Timestamp }).describe("The DiskImageReferenced event that added the reference"),
});
const WhyNotDeletedSchema = z.object({
  datacenter: z.string(),
  name: z.string(),
  status: z.enum(["active", "terminating", "deleted"]),
  references: z.array(ReferenceSchema).describe("Empty: nothing holds it (for a caller that is not a platform reader: nothing of theirs)"),
});
const DeletedSchema = z.object({ datacenter: z.string(), name: z.string(), status: z.enum(["terminating", "deleted"]), referencedBy: z.array(z.string()).describe("VM ids still holding it") });

const DiskParams = z.object({ datacenter: z.string().min(1).max(63), name: z.string().min(1).max(63) });
const ListQuery = PageQuerySchema.extend({ datacenter: z.string().min(1).max(63).optional() });

const diskImageNotFound = (datacenter: string, name: string) => notFound("disk_image_not_found", `disk image ${name} does not exist in ${datacenter}`, { datacenter, name });

export const diskImageRoutes: FastifyPluginAsyncZod<DiskImageRouteDeps> = async (app, deps) => {
  const now = deps.now ?? (() => new Date());

  /** The disk image row if the caller may see it (404 otherwise, or when missing). */
  const visibleDiskImage = async (actor: AuthenticatedActor, datacenter: string, name: string) => {
    const row = await deps.read.getDiskImage(datacenter, name);
    if (!row) throw diskImageNotFound(datacenter, name);
    if (canReadVmInfra(actor)) return { row, references: await deps.read.diskImageReferences(datacenter, name) };
    const references = visibleReferences(actor, await deps.read.diskImageReferences(datacenter, name));
    if (references.length === 0) throw diskImageNotFound(datacenter, name);
    return { row, references };
  };

  app.get(
    "/v1/disk-images",
    {
      schema: {
        operationId: "listDiskImages",
        summary: "List disk images (platform readers: all; tenants: those their projects' VMs reference)",
        description: "Ordered by (datacenter, name); ?datacenter= filters.",
        tags: TAGS,
        querystring: ListQuery,
        response: { 200: pageSchema(DiskImageSchema) },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const actor = actorOf(request);
      const { limit, cursor, datacenter } = request.query;
      const key = decodeCursor("disk-images", cursor);
      const after = key === undefined ? undefined : (JSON.parse(key) as { d: string; n: string });
      const rows = await deps.read.listDiskImages({
        limit: limit + 1,
        visibility: canReadVmInfra(actor) ? "all" : vmVisibility(actor),
        ...(datacenter !== undefined ? { datacenter } : {}),
        ...(after ? { after: { datacenter: after.d, name: after.n } } : {}),
      });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return { items: page.map(diskImageView), nextCursor: rows.length > limit && last ? encodeCursor("disk-images", JSON.stringify({ d: last.datacenter, n: last.name })) : null };
    },
  );

  app.get(
    "/v1/disk-images/:datacenter/:name",
    {
      schema: { operationId: "getDiskImage", summary: "A disk image: status, template, reference count", tags: TAGS, params: DiskParams, response: { 200: DiskImageSchema } },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const { datacenter, name } = request.params;
      return diskImageView((await visibleDiskImage(actorOf(request), datacenter, name)).row);
    },
  );

  app.get(
    "/v1/disk-images/:datacenter/:name/why-not-deleted",
    {
      schema: {
        operationId: "whyNotDeleted",
        summary: "The VMs that hold a disk image and the events that added their references",
        tags: TAGS,
        params: DiskParams,
        response: { 200: WhyNotDeletedSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const { datacenter, name } = request.params;
      const { row, references } = await visibleDiskImage(actorOf(request), datacenter, name);
      return { datacenter, name, status: storedStatus(row), references: references.map(diskImageReferenceView) };
    },
  );

  app.delete(
    "/v1/disk-images/:datacenter/:name",
    {
      schema: {
        operationId: "deleteDiskImage",
        summary: "Delete a disk image (platform-admin): 200 deleted, or 202 terminating while VMs reference it",
        description: "Synchronous. A terminating disk image takes no new references and is removed when its last reference is released.",
        tags: TAGS,
        params: DiskParams,
        headers: idempotencyHeader,
        response: { 200: DeletedSchema, 202: DeletedSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: async (request) => {
        const actor = actorOf(request);
        if (isPlatformAdmin(actor)) return;
        const { datacenter, name } = request.params as { datacenter: string; name: string };
        await visibleDiskImage(actor, datacenter, name);
        throw forbidden("delete a disk image (it needs platform-admin)");
      },
    },
    async (request, reply) => {
      const { datacenter, name } = request.params;
      const before = await loadDiskImage(deps.store, datacenter, name);
      if (before.state.status === "absent") throw diskImageNotFound(datacenter, name);
      const result = await executeDiskImageCommand(
        deps.store,
        { type: "DeleteDiskImage", datacenter, name, taskId: uuidv7(), at: now().toISOString() },
        platformContext(request, datacenter),
      );
      for (const event of result.events) deps.metrics.eventsAppended.inc({ type: event.type });
      const { state } = await loadDiskImage(deps.store, datacenter, name);
      const status = state.status === "deleted" ? "deleted" : "terminating";
      reply.code(status === "deleted" ? 200 : 202);
      return { datacenter, name, status, referencedBy: [...state.references.keys()].sort() } as const;
    },
  );
};
