import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { executeImageCommand, loadImage } from "../../commands/maskin/vm/index.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { GuestInitSchema, ImageFormatSchema, ImageSourceSchema, ResourceName, Sha256 } from "../../domain/maskin/vm/index.ts";
import { isDomainError } from "../../domain/shared/errors.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { actorOf } from "../http/access.ts";
import { decodeCursor, encodeCursor, PageQuerySchema, pageSchema } from "../http/pagination.ts";
import type { ApiMetrics } from "../observability/metrics.ts";
import { canReadVmInfra, imageViews, type ImageVersionView, type VmInfraReadModel } from "../read/vm-infra.ts";
import { idempotencyHeader } from "./headers.ts";
import { apiSchemas } from "./schemas.ts";
import { conflictOnDomainError, forbidden, notFound, platformContext, Timestamp } from "./vm-infra-common.ts";

/**
 * Images: operator-managed names with immutable versions (stream
 * `maskin-image-<name>`). A platform-admin registers a version with its
 * content: digest (sha256 hex of the content), format, where the content is
 * (a URL or a file path on the image store's side), OS family, guest init,
 * and for kernel+initrd the two parts. The same content again answers 200
 * and changes nothing; other content for an existing version is 409
 * `image_version_immutable` (new content is a new version).
 *
 * Any authenticated caller lists and reads images (tenants pick one for their
 * VMs); where the content comes from (`source`, the boot parts' sources) is
 * shown to platform readers only, null for everyone else.
 */
export interface ImageRouteDeps {
  readonly store: CommandStore;
  readonly read: VmInfraReadModel;
  readonly metrics: ApiMetrics;
  readonly now?: () => Date;
}

const TAGS = ["images"];
const Part = z.strictObject({ source: ImageSourceSchema, digest: Sha256 });

export const RegisterImageBody = z.strictObject({
  name: ResourceName,
  version: z.string().min(1).max(63).describe("Letters, digits, '.', '_', '+', '-'; never reused for other content"),
  digest: Sha256.describe("sha256 of the content, lowercase hex (for kernel+initrd: the caller's identity of the pair)"),
  format: ImageFormatSchema,
  source: ImageSourceSchema.describe("{kind: url, url} (http/https) or {kind: file, path} (absolute)"),
  osFamily: z.string().min(1).max(50),
  guestInit: GuestInitSchema,
  boot: z
    .strictObject({ kernel: Part, initrd: Part, cmdline: z.string().max(2000).optional() })
    .optional()
    .describe("Required for kernel+initrd, and only there"),
});

const SourceSchema = z.union([z.object({ kind: z.literal("url"), url: z.string() }), z.object({ kind: z.literal("file"), path: z.string() })]);
const PartView = z.object({ source: SourceSchema.nullable(), digest: z.string() });
export const ImageVersionSchema = z.object({
  version: z.string(),
  digest: z.string(),
  format: z.string(),
  source: SourceSchema.nullable().describe("Platform readers only; null for others"),
  osFamily: z.string(),
  guestInit: z.string(),
  boot: z.object({ kernel: PartView, initrd: PartView, cmdline: z.string() }).nullable(),
  registeredAt: Timestamp,
});
export const ImageSchema = z.object({ name: z.string(), versions: z.array(ImageVersionSchema).describe("In registration order") });
apiSchemas.add(ImageSchema, { id: "Image" });
const RegisteredSchema = z.object({ name: z.string(), created: z.boolean().describe("false: this version existed with this content already"), version: ImageVersionSchema });

const imageNotFound = (name: string) => notFound("image_not_found", `image ${name} does not exist`, { name });

/** Hides where the content is from callers that are not platform readers. */
function shown(actor: AuthenticatedActor, version: ImageVersionView) {
  const reveal = canReadVmInfra(actor);
  const part = (p: { source: unknown; digest: string }) => ({ source: reveal ? (p.source as z.infer<typeof SourceSchema>) : null, digest: p.digest });
  return {
    ...version,
    source: reveal ? version.source : null,
    boot: version.boot ? { kernel: part(version.boot.kernel), initrd: part(version.boot.initrd), cmdline: version.boot.cmdline } : null,
  };
}

export const imageRoutes: FastifyPluginAsyncZod<ImageRouteDeps> = async (app, deps) => {
  const now = deps.now ?? (() => new Date());

  app.post(
    "/v1/images",
    {
      schema: {
        operationId: "registerImageVersion",
        summary: "Register an image version (platform-admin)",
        description: "201: registered; 200: this version exists with the same content (nothing changes); 409 image_version_immutable: it exists with other content.",
        tags: TAGS,
        headers: idempotencyHeader,
        body: RegisterImageBody,
        response: { 200: RegisteredSchema, 201: RegisteredSchema },
      },
      config: { access: { level: "administer-platform" } },
    },
    async (request, reply) => {
      const { name, version, boot, ...content } = request.body;
      const command = {
        type: "RegisterImageVersion",
        name,
        version,
        content: { ...content, boot: boot ? { kernel: boot.kernel, initrd: boot.initrd, cmdline: boot.cmdline ?? "" } : null },
        at: now().toISOString(),
      };
      const result = await executeImageCommand(deps.store, command, platformContext(request)).catch((error: unknown) => {
        if (isDomainError(error) && error.code === "image_version_immutable") conflictOnDomainError(error);
        throw error;
      });
      for (const event of result.events) deps.metrics.eventsAppended.inc({ type: event.type });
      const { state } = await loadImage(deps.store, name);
      const registered = state.versions.get(version)!;
      const c = registered.content;
      reply.code(result.events.length > 0 ? 201 : 200);
      reply.header("location", `/v1/images/${encodeURIComponent(name)}`);
      return {
        name,
        created: result.events.length > 0,
        version: shown(actorOf(request), { version, digest: c.digest, format: c.format, source: c.source, osFamily: c.osFamily, guestInit: c.guestInit, boot: c.boot, registeredAt: registered.registeredAt }),
      };
    },
  );

  app.get(
    "/v1/images",
    {
      schema: {
        operationId: "listImages",
        summary: "List images with their versions (any authenticated caller)",
        description: "Ordered by name, each with all its versions. From the maskin_images read model (eventually consistent).",
        tags: TAGS,
        querystring: PageQuerySchema,
        response: { 200: pageSchema(ImageSchema) },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const actor = actorOf(request);
      const { limit, cursor } = request.query;
      const after = decodeCursor("images", cursor);
      const names = await deps.read.listImageNames({ limit: limit + 1, ...(after !== undefined ? { after } : {}) });
      const images = imageViews(await deps.read.listImageVersions(names.slice(0, limit)));
      return {
        items: images.map((image) => ({ name: image.name, versions: image.versions.map((v) => shown(actor, v)) })),
        nextCursor: names.length > limit ? encodeCursor("images", names[limit - 1]!) : null,
      };
    },
  );

  app.get(
    "/v1/images/:name",
    {
      schema: {
        operationId: "getImage",
        summary: "An image with its versions",
        tags: TAGS,
        params: z.object({ name: z.string().min(1).max(63) }),
        response: { 200: ImageSchema },
      },
      config: { access: { level: "authenticated" } },
    },
    async (request) => {
      const { name } = request.params;
      const [image] = imageViews(await deps.read.listImageVersions([name]));
      if (!image) throw imageNotFound(name);
      const actor = actorOf(request);
      return { name, versions: image.versions.map((v) => shown(actor, v)) };
    },
  );
};

