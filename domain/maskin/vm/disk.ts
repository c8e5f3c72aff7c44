import { z } from "zod";
import type { Decider } from "../../shared/decider.ts";
import { DomainError } from "../../shared/errors.ts";
import { At, Datacenter, Id, ResourceName, unreachable } from "./common.ts";

/**
 * Disk images with reference counting (the VMDiskImage design), stream
 * `maskin-disk-<datacenter>-<name>`. A VM references a disk image by name:
 * - `CreateIfNotExist` with a template (image version, size, storage class):
 *   created when missing; when it exists, it wins, and each template field
 *   that differs is a warning on the reference (carried by the event);
 * - `FailIfNotExist`: refused with `disk_image_not_found` when missing.
 * The disk image tracks the referencing VMs and what added each reference.
 * Deleting a referenced disk image makes it `terminating` (no new
 * references: `disk_image_terminating`); it is deleted (`DiskImageDeleted`)
 * only when its last reference is released. After deletion the name can be
 * created again (a new `generation`).
 */

export const DiskImageModeSchema = z.enum(["CreateIfNotExist", "FailIfNotExist"]);
export type DiskImageMode = z.infer<typeof DiskImageModeSchema>;

export const DiskTemplateSchema = z.strictObject({
  image: z.strictObject({ name: ResourceName, version: z.string().min(1).max(63) }),
  sizeGiB: z.int().positive().max(65536),
  storageClass: ResourceName,
});
export type DiskTemplate = z.infer<typeof DiskTemplateSchema>;

export const ReferenceDiskImageSchema = z
  .strictObject({
    type: z.literal("ReferenceDiskImage"),
    datacenter: Datacenter,
    name: ResourceName,
    vmId: Id,
    mode: DiskImageModeSchema,
    /** Required with CreateIfNotExist; optional with FailIfNotExist (then only compared, for warnings). */
    template: DiskTemplateSchema.nullable().default(null),
    taskId: Id,
    at: At,
  })
  .refine((c) => c.mode !== "CreateIfNotExist" || c.template !== null, { message: "CreateIfNotExist needs a template", path: ["template"] });
export const ReleaseDiskImageReferenceSchema = z.strictObject({
  type: z.literal("ReleaseDiskImageReference"),
  datacenter: Datacenter,
  name: ResourceName,
  vmId: Id,
  taskId: Id,
  at: At,
});
export const DeleteDiskImageSchema = z.strictObject({ type: z.literal("DeleteDiskImage"), datacenter: Datacenter, name: ResourceName, taskId: Id, at: At });

export const DiskImageCommandSchema = z.discriminatedUnion("type", [ReferenceDiskImageSchema, ReleaseDiskImageReferenceSchema, DeleteDiskImageSchema]);
export type DiskImageCommand = z.infer<typeof DiskImageCommandSchema>;
export type DiskImageCommandInput = z.input<typeof DiskImageCommandSchema>;

const S = z.string().min(1);
export const TemplateWarningSchema = z.object({ field: z.enum(["image", "sizeGiB", "storageClass"]), existing: z.string(), requested: z.string() });
export type TemplateWarning = z.infer<typeof TemplateWarningSchema>;

export const diskImageEventSchemas = {
  DiskImageCreated: {
    schemaVersion: 1,
    schema: z.object({ datacenter: S, name: S, generation: z.int().positive(), template: DiskTemplateSchema, createdForVmId: S, taskId: S, at: S }),
  },
  DiskImageReferenced: {
    schemaVersion: 1,
    schema: z.object({
      datacenter: S,
      name: S,
      vmId: S,
      mode: DiskImageModeSchema,
      /** Template fields that differ from the existing disk image (it wins). */
      warnings: z.array(TemplateWarningSchema),
      references: z.int().positive(),
      taskId: S,
      at: S,
    }),
  },
  DiskImageReferenceReleased: { schemaVersion: 1, schema: z.object({ datacenter: S, name: S, vmId: S, references: z.int().nonnegative(), taskId: S, at: S }) },
  DiskImageDeletionRequested: { schemaVersion: 1, schema: z.object({ datacenter: S, name: S, referencedBy: z.array(S), taskId: S, at: S }) },
  DiskImageDeleted: { schemaVersion: 1, schema: z.object({ datacenter: S, name: S, generation: z.int().positive(), taskId: S, at: S }) },
} as const;
type Schemas = typeof diskImageEventSchemas;
export type DiskImageEventType = keyof Schemas;
export type DiskImageEvent = { [T in DiskImageEventType]: { type: T; data: z.infer<Schemas[T]["schema"]> } }[DiskImageEventType];
export type DiskImageEventOf<T extends DiskImageEventType> = Extract<DiskImageEvent, { type: T }>;
export const DISK_IMAGE_EVENT_TYPES = Object.keys(diskImageEventSchemas) as DiskImageEventType[];
export function diskImageEvent<T extends DiskImageEventType>(type: T, data: DiskImageEventOf<T>["data"]): DiskImageEventOf<T> {
  return { type, data } as DiskImageEventOf<T>;
}

export type DiskImageStatus = "absent" | "active" | "terminating" | "deleted";

export interface DiskImageReference {
  readonly vmId: string;
  readonly mode: DiskImageMode;
  readonly warnings: readonly TemplateWarning[];
  /** What added it: the `DiskImageReferenced` event of this task at this time (the read model adds the envelope's event id). */
  readonly addedBy: { readonly event: "DiskImageReferenced"; readonly taskId: string; readonly at: string };
}

export interface DiskImageState {
  readonly datacenter: string | null;
  readonly name: string | null;
  readonly status: DiskImageStatus;
  readonly generation: number;
  readonly template: DiskTemplate | null;
  readonly references: ReadonlyMap<string, DiskImageReference>;
  readonly deletion: { readonly taskId: string; readonly at: string } | null;
}
export const initialDiskImageState: DiskImageState = { datacenter: null, name: null, status: "absent", generation: 0, template: null, references: new Map(), deletion: null };

/** `dvce disk why-not-deleted`: the status and every reference with what added it (sorted by time, then VM id). */
export function whyNotDeleted(state: DiskImageState): { status: DiskImageStatus; references: DiskImageReference[] } {
  const references = [...state.references.values()].sort((a, b) => (a.addedBy.at < b.addedBy.at ? -1 : a.addedBy.at > b.addedBy.at ? 1 : a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0));
  return { status: state.status, references };
}

export function templateWarnings(existing: DiskTemplate, requested: DiskTemplate): TemplateWarning[] {
  const warnings: TemplateWarning[] = [];
  const ei = `${existing.image.name}@${existing.image.version}`;
  const ri = `${requested.image.name}@${requested.image.version}`;
  if (ei !== ri) warnings.push({ field: "image", existing: ei, requested: ri });
  if (existing.sizeGiB !== requested.sizeGiB) warnings.push({ field: "sizeGiB", existing: String(existing.sizeGiB), requested: String(requested.sizeGiB) });
  if (existing.storageClass !== requested.storageClass) warnings.push({ field: "storageClass", existing: existing.storageClass, requested: requested.storageClass });
  return warnings;
}

function decide(command: DiskImageCommand, state: DiskImageState): readonly DiskImageEvent[] | DomainError {
  const where = { datacenter: command.datacenter, name: command.name };
  const notFound = () => new DomainError("disk_image_not_found", `disk image ${command.name} does not exist in ${command.datacenter}`, where);
  const exists = state.status === "active" || state.status === "terminating";
  switch (command.type) {
    case "ReferenceDiskImage": {
      if (state.references.has(command.vmId)) return [];
      if (state.status === "terminating") {
        return new DomainError("disk_image_terminating", `disk image ${command.name} is being deleted; it takes no new references`, { ...where, referencedBy: [...state.references.keys()].sort() });
      }
      const ref = { ...where, vmId: command.vmId, mode: command.mode, taskId: command.taskId, at: command.at };
      if (!exists) {
        if (command.mode === "FailIfNotExist" || command.template === null) return notFound();
        return [
          diskImageEvent("DiskImageCreated", { ...where, generation: state.generation + 1, template: command.template, createdForVmId: command.vmId, taskId: command.taskId, at: command.at }),
          diskImageEvent("DiskImageReferenced", { ...ref, warnings: [], references: 1 }),
        ];
      }
      const warnings = command.template && state.template ? templateWarnings(state.template, command.template) : [];
      return [diskImageEvent("DiskImageReferenced", { ...ref, warnings, references: state.references.size + 1 })];
    }
    case "ReleaseDiskImageReference": {
      if (!state.references.has(command.vmId)) return [];
      const remaining = state.references.size - 1;
      const released = diskImageEvent("DiskImageReferenceReleased", { ...where, vmId: command.vmId, references: remaining, taskId: command.taskId, at: command.at });
      if (state.status === "terminating" && remaining === 0) {
        return [released, diskImageEvent("DiskImageDeleted", { ...where, generation: state.generation, taskId: command.taskId, at: command.at })];
      }
      return [released];
    }
    case "DeleteDiskImage": {
      if (state.status === "absent") return notFound();
      if (state.status !== "active") return [];
      if (state.references.size === 0) return [diskImageEvent("DiskImageDeleted", { ...where, generation: state.generation, taskId: command.taskId, at: command.at })];
      return [diskImageEvent("DiskImageDeletionRequested", { ...where, referencedBy: [...state.references.keys()].sort(), taskId: command.taskId, at: command.at })];
    }
    default:
      return unreachable(command);
  }
}

function evolve(state: DiskImageState, event: DiskImageEvent): DiskImageState {
  const d = event.data;
  switch (event.type) {
    case "DiskImageCreated":
      return { datacenter: d.datacenter, name: d.name, status: "active", generation: event.data.generation, template: event.data.template, references: new Map(), deletion: null };
    case "DiskImageReferenced": {
      const e = event.data;
      const references = new Map(state.references);
      references.set(e.vmId, { vmId: e.vmId, mode: e.mode, warnings: e.warnings, addedBy: { event: "DiskImageReferenced", taskId: e.taskId, at: e.at } });
      return { ...state, references };
    }
    case "DiskImageReferenceReleased": {
      const references = new Map(state.references);
      references.delete(event.data.vmId);
      return { ...state, references };
    }
    case "DiskImageDeletionRequested":
      return { ...state, status: "terminating", deletion: { taskId: event.data.taskId, at: event.data.at } };
    case "DiskImageDeleted":
      return { ...state, status: "deleted", references: new Map(), deletion: state.deletion ?? { taskId: event.data.taskId, at: event.data.at } };
    default:
      return unreachable(event);
  }
}

export const diskImageDecider: Decider<DiskImageCommand, DiskImageEvent, DiskImageState> = { initialState: initialDiskImageState, decide, evolve };
