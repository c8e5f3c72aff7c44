import { z } from "zod";
import type { Decider } from "../../shared/decider.ts";
import { DomainError } from "../../shared/errors.ts";
import { At, ResourceName, Sha256, unreachable } from "./common.ts";

/**
 * Images (stream `maskin-image-<name>`), operator-managed. An image is a name
 * plus immutable versions. A version is never changed in place: registering
 * it again with the same content is a no-op, with any different content it is
 * refused (`image_version_immutable`); new content is a new version.
 * `kernel+initrd` versions name both parts (each with its own digest); the
 * version's `digest` is the caller's content identity of the whole.
 */

export const ImageFormatSchema = z.enum(["qcow2", "raw", "kernel+initrd"]);
export const GuestInitSchema = z.enum(["cloud-init", "talos", "none"]);
export const ImageSourceSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("url"), url: z.url({ protocol: /^https?$/ }) }),
  z.strictObject({ kind: z.literal("file"), path: z.string().min(1).max(1000).startsWith("/") }),
]);
const PartSchema = z.strictObject({ source: ImageSourceSchema, digest: Sha256 });

export const ImageVersionContentSchema = z
  .strictObject({
    digest: Sha256,
    format: ImageFormatSchema,
    source: ImageSourceSchema,
    osFamily: z.string().min(1).max(50),
    guestInit: GuestInitSchema,
    /** Only for kernel+initrd: the two parts and an optional kernel command line. */
    boot: z.strictObject({ kernel: PartSchema, initrd: PartSchema, cmdline: z.string().max(2000).default("") }).nullable().default(null),
  })
  .refine((c) => (c.format === "kernel+initrd") === (c.boot !== null), { message: "boot (kernel, initrd) is required for kernel+initrd and only for it", path: ["boot"] });
export type ImageVersionContent = z.infer<typeof ImageVersionContentSchema>;

const Version = z.string().min(1).max(63).regex(/^[A-Za-z0-9][A-Za-z0-9._+-]*$/);

export const RegisterImageVersionSchema = z.strictObject({
  type: z.literal("RegisterImageVersion"),
  name: ResourceName,
  version: Version,
  content: ImageVersionContentSchema,
  at: At,
});
export const ImageCommandSchema = z.discriminatedUnion("type", [RegisterImageVersionSchema]);
export type ImageCommand = z.infer<typeof ImageCommandSchema>;
export type ImageCommandInput = z.input<typeof ImageCommandSchema>;

export const imageEventSchemas = {
  ImageVersionRegistered: {
    schemaVersion: 1,
    schema: z.object({ name: z.string(), version: z.string(), content: ImageVersionContentSchema, at: z.string() }),
  },
} as const;
type Schemas = typeof imageEventSchemas;
export type ImageEventType = keyof Schemas;
export type ImageEvent = { [T in ImageEventType]: { type: T; data: z.infer<Schemas[T]["schema"]> } }[ImageEventType];
export type ImageEventOf<T extends ImageEventType> = Extract<ImageEvent, { type: T }>;
export const IMAGE_EVENT_TYPES = Object.keys(imageEventSchemas) as ImageEventType[];
export function imageEvent<T extends ImageEventType>(type: T, data: ImageEventOf<T>["data"]): ImageEventOf<T> {
  return { type, data } as ImageEventOf<T>;
}

export interface ImageState {
  readonly name: string | null;
  /** Versions in registration order. */
  readonly versions: ReadonlyMap<string, { readonly content: ImageVersionContent; readonly registeredAt: string }>;
}
export const initialImageState: ImageState = { name: null, versions: new Map() };

/** Canonical JSON (sorted keys) so that content equality does not depend on key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function sameImageContent(a: ImageVersionContent, b: ImageVersionContent): boolean {
  return canonical(a) === canonical(b);
}

/** The fields where two contents differ (for the refusal's details). */
function differences(a: ImageVersionContent, b: ImageVersionContent): string[] {
  return (Object.keys(a) as Array<keyof ImageVersionContent>).filter((k) => canonical(a[k]) !== canonical(b[k])).sort();
}

function decide(command: ImageCommand, state: ImageState): readonly ImageEvent[] | DomainError {
  switch (command.type) {
    case "RegisterImageVersion": {
      const existing = state.versions.get(command.version);
      if (existing) {
        if (sameImageContent(existing.content, command.content)) return [];
        return new DomainError(
          "image_version_immutable",
          `image ${command.name} version ${command.version} exists with other content (${differences(existing.content, command.content).join(", ")}); register new content as a new version`,
          { name: command.name, version: command.version, fields: differences(existing.content, command.content), digest: existing.content.digest },
        );
      }
      return [imageEvent("ImageVersionRegistered", { name: command.name, version: command.version, content: command.content, at: command.at })];
    }
    default:
      return unreachable(command.type);
  }
}

function evolve(state: ImageState, event: ImageEvent): ImageState {
  switch (event.type) {
    case "ImageVersionRegistered": {
      const versions = new Map(state.versions);
      versions.set(event.data.version, { content: event.data.content, registeredAt: event.data.at });
      return { name: event.data.name, versions };
    }
    default:
      return unreachable(event.type);
  }
}

export const imageDecider: Decider<ImageCommand, ImageEvent, ImageState> = { initialState: initialImageState, decide, evolve };
