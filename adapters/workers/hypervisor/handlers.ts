import { stat } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { QemuStartError, VmNotRunningError } from "../../qemu/runtime.ts";
import type { VmRuntime, VmSpec } from "../../qemu/port.ts";
import { buildSeedIso } from "../../qemu/seed.ts";
import { DiskConflictError, ImageImportError, type ImageRef, type ImageStore, type ImportedImage } from "../../qemu/store.ts";
import { WorkError, type WorkContext, type WorkHandler } from "../worker.ts";

/**
 * The `hypervisor` worker's actions (README.md here is the contract the VM
 * sagas rely on), over the VM runtime port and the image/disk store
 * (adapters/qemu/store.ts). One worker per hypervisor host. Every action
 * converges:
 *
 * - `disk-prepare` {vmId, disk:{name, generation, sizeGiB}, image}: imports
 *   the image version once, ensures the disk image and the VM's overlay;
 * - `seed-build` {vmId, hostname, instanceId, sshAuthorizedKeys, userData?}:
 *   the VM's NoCloud seed ISO;
 * - `vm-start`, path form {vmId, vcpus, memoryMiB, boot:{kind:"kernel"|"disk"},
 *   disk?:{overlay, base?, size?}, nics?, seedIso?} or logical form
 *   {..., boot:{kind:"disk"}|{kind:"image-kernel", image, append?},
 *   disk?:{prepared:true}, seed?:boolean, nics?}: starts the VM, or answers
 *   `alreadyRunning: true` when its process already runs;
 * - `vm-stop` {vmId, acpiTimeoutMs?}: ACPI, then quit, then SIGKILL; an absent
 *   VM answers `method: "absent"` (nothing to do);
 * - `vm-reboot` {vmId}: hard reset; the VM must be running;
 * - `vm-status` {vmId}: the VmStatus (`absent` when no process runs);
 * - `vm-destroy` {vmId}: stops (no ACPI wait) and removes the VM's directory;
 * - `disk-remove` {name, generation}: deletes the disk image generation.
 *
 * Failures are WorkErrors: `invalid_payload`, `vm_not_found` (the VM has no
 * running process: reboot), `vm_start_failed` (QEMU refused to start, with
 * the tail of its stderr), `vm_not_prepared` (a logical vm-start whose
 * files disk-prepare/seed-build did not make), `image_digest_mismatch`,
 * `image_source_unavailable` and `vm_disk_conflict` (the VM's overlay is on
 * another disk image) are permanent; anything else is transient
 * `hypervisor_error`.
 */

/** What the handlers need of the machine: the runtime (with its per-VM directories) and the store. */
export interface HypervisorMachine {
  readonly runtime: VmRuntime & { runDir(vmId: string): string; removeRunDir(vmId: string): Promise<void> };
  readonly store: ImageStore;
}

/** `store` is the image/disk store's directory under the run root: no VM may take that name. */
const RESERVED_VM_IDS = new Set(["store"]);

const VmIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "a VM id: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
  .refine((id) => !RESERVED_VM_IDS.has(id), "this VM id is reserved (the store's directory)");
const NameSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "a name: lowercase a-z, 0-9, '.', '_' or '-'");
const VersionSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$/);
const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, "a SHA-256 digest in lowercase hex");
const SourceSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("file"), path: z.string().min(1).startsWith("/") }),
  z.object({ kind: z.literal("url"), url: z.string().regex(/^https?:\/\//, "an http(s) URL") }),
]);
const PartSchema = z.object({ source: SourceSchema, digest: Sha256 });

export const ImageRefSchema = z
  .object({
    name: NameSchema,
    version: VersionSchema,
    format: z.enum(["qcow2", "raw", "kernel+initrd"]),
    digest: Sha256,
    source: SourceSchema,
    boot: z.object({ kernel: PartSchema, initrd: PartSchema, cmdline: z.string().max(2000).default("") }).nullable().default(null),
  })
  .refine((i) => (i.format === "kernel+initrd") === (i.boot !== null), { message: "boot (kernel, initrd) is required for kernel+initrd and only for it", path: ["boot"] });

export const DiskPreparePayloadSchema = z.object({
  vmId: VmIdSchema,
  disk: z.object({ name: NameSchema, generation: z.number().int().min(0), sizeGiB: z.number().int().min(0).max(65536) }),
  image: ImageRefSchema.nullable(),
});

export const SeedBuildPayloadSchema = z.object({
  vmId: VmIdSchema,
  hostname: z.string().min(1).max(253),
  instanceId: z.string().min(1).max(128),
  sshAuthorizedKeys: z.array(z.string().min(1).max(16_384)).max(100).default([]),
  userData: z.string().max(64 * 1024).optional(),
  /** NIC MACs for the generated network-config (DHCP per NIC); none: no ethernets. */
  nicMacs: z.array(z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i)).max(16).optional(),
});

const BootSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("kernel"), kernel: z.string().min(1), initrd: z.string().min(1).optional(), append: z.string().optional() }),
  z.object({ kind: z.literal("disk") }),
  z.object({ kind: z.literal("image-kernel"), image: z.object({ name: NameSchema, version: VersionSchema }), append: z.string().max(4000).optional() }),
]);

const PathDiskSchema = z.object({ overlay: z.string().min(1), base: z.string().min(1).optional(), size: z.string().min(1).optional() });
const PreparedDiskSchema = z.object({ prepared: z.literal(true) });

export const VmStartPayloadSchema = z.object({
  vmId: VmIdSchema,
  vcpus: z.number().int().min(1).max(256),
  memoryMiB: z.number().int().min(16),
  boot: BootSchema,
  disk: z.union([PreparedDiskSchema, PathDiskSchema]).optional(),
  nics: z
    .array(
      z.object({
        model: z.string().min(1).optional(),
        sshHostPort: z.number().int().min(1).max(65535).optional(),
        mac: z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i).optional(),
      }),
    )
    .max(16)
    .optional(),
  seedIso: z.string().min(1).optional(),
  /** Logical form: attach `<vm-dir>/<vmId>/seed.iso` (seed-build). */
  seed: z.boolean().optional(),
});

export const VmStopPayloadSchema = z.object({ vmId: VmIdSchema, acpiTimeoutMs: z.number().int().min(0).max(600_000).optional() });
export const VmIdPayloadSchema = z.object({ vmId: VmIdSchema });
export const DiskRemovePayloadSchema = z.object({ name: NameSchema, generation: z.number().int().min(0) });

function parse<T>(schema: z.ZodType<T>, payload: unknown): T {
  const parsed = schema.safeParse(payload);
  if (!parsed.success) {
    throw new WorkError(`invalid payload: ${parsed.error.issues.map((i) => `${i.path.join(".") || "payload"}: ${i.message}`).join("; ")}`, {
      transient: false,
      code: "invalid_payload",
    });
  }
  return parsed.data;
}

function notCancelled(context: WorkContext): void {
  if (context.signal.aborted) throw new WorkError("cancelled before acting", { transient: true, code: "cancelled" });
}

/** The runtime's and the store's errors as WorkErrors (see the file comment). */
export function toWorkError(error: unknown, vmId: string): WorkError {
  if (error instanceof WorkError) return error;
  if (error instanceof VmNotRunningError) return new WorkError(error.message, { transient: false, code: "vm_not_found" });
  if (error instanceof QemuStartError) return new WorkError(error.message.slice(0, 2000), { transient: false, code: "vm_start_failed" });
  if (error instanceof ImageImportError) return new WorkError(error.message.slice(0, 2000), { transient: false, code: error.code });
  if (error instanceof DiskConflictError) return new WorkError(error.message.slice(0, 2000), { transient: false, code: "vm_disk_conflict" });
  if (error instanceof RangeError) return new WorkError(error.message.slice(0, 2000), { transient: false, code: "invalid_payload" });
  const text = error instanceof Error ? error.message : String(error);
  return new WorkError(`VM ${vmId}: ${text}`.slice(0, 2000), { transient: true, code: "hypervisor_error" });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function notPrepared(vmId: string, what: string): WorkError {
  return new WorkError(`VM ${vmId} is not prepared: ${what}`, { transient: false, code: "vm_not_prepared" });
}

/** The files of the VM's logical layout (README.md): overlay and seed in its directory. */
export function vmFiles(machine: HypervisorMachine, vmId: string): { dir: string; overlay: string; seedIso: string } {
  const dir = machine.runtime.runDir(vmId);
  return { dir, overlay: join(dir, "disk.qcow2"), seedIso: join(dir, "seed.iso") };
}

/** The runtime spec of a vm-start payload; the logical form's files must exist (else vm_not_prepared). */
async function toSpec(machine: HypervisorMachine, p: z.infer<typeof VmStartPayloadSchema>): Promise<VmSpec> {
  const files = vmFiles(machine, p.vmId);
  let boot: VmSpec["boot"];
  if (p.boot.kind === "kernel") {
    boot = { kind: "kernel", kernel: p.boot.kernel, ...(p.boot.initrd ? { initrd: p.boot.initrd } : {}), ...(p.boot.append !== undefined ? { append: p.boot.append } : {}) };
  } else if (p.boot.kind === "image-kernel") {
    const image = await machine.store.imported(p.boot.image.name, p.boot.image.version);
    if (!image) throw notPrepared(p.vmId, `image ${p.boot.image.name}@${p.boot.image.version} is not imported on this hypervisor (disk-prepare imports it)`);
    if (image.format !== "kernel+initrd") throw new WorkError(`image ${p.boot.image.name}@${p.boot.image.version} is ${image.format}, not kernel+initrd`, { transient: false, code: "invalid_payload" });
    const append = p.boot.append ?? image.cmdline;
    boot = { kind: "kernel", kernel: image.kernel, initrd: image.initrd, ...(append ? { append } : {}) };
  } else {
    boot = { kind: "disk" };
  }
  let disk: VmSpec["disk"];
  if (p.disk && "prepared" in p.disk) {
    if (!(await exists(files.overlay))) throw notPrepared(p.vmId, `no disk overlay ${files.overlay} (disk-prepare makes it)`);
    disk = { overlay: files.overlay };
  } else if (p.disk) {
    disk = { overlay: p.disk.overlay, ...(p.disk.base ? { base: p.disk.base } : {}), ...(p.disk.size ? { size: p.disk.size } : {}) };
  }
  let seedIso = p.seedIso;
  if (p.seed) {
    if (!(await exists(files.seedIso))) throw notPrepared(p.vmId, `no seed ISO ${files.seedIso} (seed-build makes it)`);
    seedIso = files.seedIso;
  }
  return {
    vmId: p.vmId,
    vcpus: p.vcpus,
    memoryMiB: p.memoryMiB,
    boot,
    ...(disk ? { disk } : {}),
    ...(p.nics ? { nics: p.nics.map((n) => ({ ...(n.model ? { model: n.model } : {}), ...(n.sshHostPort ? { sshHostPort: n.sshHostPort } : {}), ...(n.mac ? { mac: n.mac.toLowerCase() } : {}) })) } : {}),
    ...(seedIso ? { seedIso } : {}),
  };
}

function importedOutput(image: ImportedImage): Record<string, string> {
  return image.format === "kernel+initrd" ? { kernel: image.kernel, initrd: image.initrd } : { path: image.path };
}

export function createHypervisorHandlers(machine: HypervisorMachine): Record<string, WorkHandler> {
  const { runtime, store } = machine;
  return {
    "disk-prepare": async (request, context) => {
      const payload = parse(DiskPreparePayloadSchema, request.payload);
      notCancelled(context);
      try {
        let image: ImportedImage | null = null;
        let imported = false;
        if (payload.image) {
          const done = await store.importImage(payload.image as ImageRef, { signal: context.signal });
          image = done.image;
          imported = done.imported;
        }
        const disk = await store.ensureDisk(payload.disk.name, payload.disk.generation, payload.disk.sizeGiB, image);
        const overlay = await store.ensureOverlay(vmFiles(machine, payload.vmId).overlay, disk.path);
        return { vmId: payload.vmId, overlay: overlay.path, disk: disk.path, ...(image ? { image: importedOutput(image) } : {}), imported };
      } catch (error) {
        throw toWorkError(error, payload.vmId);
      }
    },
    "seed-build": async (request, context) => {
      const payload = parse(SeedBuildPayloadSchema, request.payload);
      notCancelled(context);
      try {
        const seedIso = await buildSeedIso(vmFiles(machine, payload.vmId).seedIso, {
          instanceId: payload.instanceId,
          hostname: payload.hostname,
          sshAuthorizedKeys: payload.sshAuthorizedKeys,
          ...(payload.userData !== undefined ? { userData: payload.userData } : {}),
          ...(payload.nicMacs ? { nicMacs: payload.nicMacs } : {}),
        });
        return { vmId: payload.vmId, seedIso };
      } catch (error) {
        throw toWorkError(error, payload.vmId);
      }
    },
    "vm-start": async (request, context) => {
      const payload = parse(VmStartPayloadSchema, request.payload);
      notCancelled(context);
      try {
        const started = await runtime.start(await toSpec(machine, payload));
        return { vmId: started.vmId, pid: started.pid, alreadyRunning: started.alreadyRunning, macs: [...started.macs], startMs: started.startMs, state: "running" };
      } catch (error) {
        throw toWorkError(error, payload.vmId);
      }
    },
    "vm-stop": async (request, context) => {
      const payload = parse(VmStopPayloadSchema, request.payload);
      notCancelled(context);
      try {
        const stopped = await runtime.stop(payload.vmId, payload.acpiTimeoutMs !== undefined ? { acpiTimeoutMs: payload.acpiTimeoutMs } : {});
        return { vmId: stopped.vmId, method: stopped.method, durationMs: stopped.durationMs, wasRunning: stopped.method !== "absent", state: "absent" };
      } catch (error) {
        throw toWorkError(error, payload.vmId);
      }
    },
    "vm-reboot": async (request, context) => {
      const payload = parse(VmIdPayloadSchema, request.payload);
      notCancelled(context);
      try {
        await runtime.reboot(payload.vmId);
        const status = await runtime.status(payload.vmId);
        return { vmId: status.vmId, rebooted: true, state: status.state, pid: status.pid };
      } catch (error) {
        throw toWorkError(error, payload.vmId);
      }
    },
    "vm-status": async (request) => {
      const payload = parse(VmIdPayloadSchema, request.payload);
      try {
        const status = await runtime.status(payload.vmId);
        return { vmId: status.vmId, state: status.state, pid: status.pid };
      } catch (error) {
        throw toWorkError(error, payload.vmId);
      }
    },
    "vm-destroy": async (request, context) => {
      const payload = parse(VmIdPayloadSchema, request.payload);
      notCancelled(context);
      try {
        // The VM is being deleted: no ACPI wait (quit, then SIGKILL).
        const stopped = await runtime.stop(payload.vmId, { acpiTimeoutMs: 0 });
        const dir = vmFiles(machine, payload.vmId).dir;
        const had = await exists(dir);
        await runtime.removeRunDir(payload.vmId);
        return { vmId: payload.vmId, removed: had, wasRunning: stopped.method !== "absent", method: stopped.method };
      } catch (error) {
        throw toWorkError(error, payload.vmId);
      }
    },
    "disk-remove": async (request, context) => {
      const payload = parse(DiskRemovePayloadSchema, request.payload);
      notCancelled(context);
      try {
        const done = await store.removeDisk(payload.name, payload.generation);
        return { name: payload.name, generation: payload.generation, disk: done.path, removed: done.removed };
      } catch (error) {
        throw toWorkError(error, `${payload.name}-g${payload.generation}`);
      }
    },
  };
}
