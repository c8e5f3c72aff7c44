import { z } from "zod";
import { QemuStartError, VmNotRunningError } from "../../qemu/runtime.ts";
import type { VmRuntime, VmSpec } from "../../qemu/port.ts";
import { WorkError, type WorkContext, type WorkHandler } from "../worker.ts";

/**
 * The `hypervisor` worker's actions, over the VM runtime port (one runtime
 * per worker, the machine's QEMU). Every action converges:
 *
 * - `vm-start` {vmId, vcpus, memoryMiB, boot, disk?, nics?, seedIso?}: starts
 *   the VM, or answers `alreadyRunning: true` when its process already runs;
 * - `vm-stop` {vmId, acpiTimeoutMs?}: ACPI, then quit, then SIGKILL; an absent
 *   VM answers `method: "absent"` (nothing to do);
 * - `vm-reboot` {vmId}: hard reset; the VM must be running;
 * - `vm-status` {vmId}: the VmStatus (`absent` when no process runs).
 *
 * Failures are WorkErrors: `invalid_payload`, `vm_not_found` (the VM has no
 * running process: reboot) and `vm_start_failed` (QEMU refused to start,
 * with the tail of its stderr) are permanent; anything else the runtime
 * throws is transient `hypervisor_error`.
 */

const VmIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "a VM id: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}");

const BootSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("kernel"), kernel: z.string().min(1), initrd: z.string().min(1).optional(), append: z.string().optional() }),
  z.object({ kind: z.literal("disk") }),
]);

export const VmStartPayloadSchema = z.object({
  vmId: VmIdSchema,
  vcpus: z.number().int().min(1).max(256),
  memoryMiB: z.number().int().min(16),
  boot: BootSchema,
  disk: z.object({ overlay: z.string().min(1), base: z.string().min(1).optional(), size: z.string().min(1).optional() }).optional(),
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
});

export const VmStopPayloadSchema = z.object({ vmId: VmIdSchema, acpiTimeoutMs: z.number().int().min(0).max(600_000).optional() });
export const VmIdPayloadSchema = z.object({ vmId: VmIdSchema });

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

/** The runtime's errors as WorkErrors (see the file comment). */
export function toWorkError(error: unknown, vmId: string): WorkError {
  if (error instanceof WorkError) return error;
  if (error instanceof VmNotRunningError) return new WorkError(error.message, { transient: false, code: "vm_not_found" });
  if (error instanceof QemuStartError) return new WorkError(error.message.slice(0, 2000), { transient: false, code: "vm_start_failed" });
  const text = error instanceof Error ? error.message : String(error);
  return new WorkError(`VM ${vmId}: ${text}`.slice(0, 2000), { transient: true, code: "hypervisor_error" });
}

function toSpec(p: z.infer<typeof VmStartPayloadSchema>): VmSpec {
  const boot: VmSpec["boot"] =
    p.boot.kind === "kernel"
      ? { kind: "kernel", kernel: p.boot.kernel, ...(p.boot.initrd ? { initrd: p.boot.initrd } : {}), ...(p.boot.append !== undefined ? { append: p.boot.append } : {}) }
      : { kind: "disk" };
  return {
    vmId: p.vmId,
    vcpus: p.vcpus,
    memoryMiB: p.memoryMiB,
    boot,
    ...(p.disk ? { disk: { overlay: p.disk.overlay, ...(p.disk.base ? { base: p.disk.base } : {}), ...(p.disk.size ? { size: p.disk.size } : {}) } } : {}),
    ...(p.nics ? { nics: p.nics.map((n) => ({ ...(n.model ? { model: n.model } : {}), ...(n.sshHostPort ? { sshHostPort: n.sshHostPort } : {}), ...(n.mac ? { mac: n.mac } : {}) })) } : {}),
    ...(p.seedIso ? { seedIso: p.seedIso } : {}),
  };
}

export function createHypervisorHandlers(runtime: VmRuntime): Record<string, WorkHandler> {
  return {
    "vm-start": async (request, context) => {
      const payload = parse(VmStartPayloadSchema, request.payload);
      notCancelled(context);
      try {
        const started = await runtime.start(toSpec(payload));
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
  };
}
