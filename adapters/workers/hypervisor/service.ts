import { homedir } from "node:os";
import { join } from "node:path";
import { QemuRuntime } from "../../qemu/runtime.ts";
import { registerWorkerService, type WorkerServiceContext } from "../registry.ts";
import { createHypervisorHandlers } from "./handlers.ts";

/**
 * The `hypervisor` worker service: `dv worker --service hypervisor
 * --datacenter osl1` on a machine that runs VMs. Actions `vm-start`,
 * `vm-stop`, `vm-reboot`, `vm-status` (handlers.ts) over the QEMU runtime
 * (adapters/qemu, always `-accel tcg`).
 *
 * Environment:
 * - `DV_VM_RUN_DIR`: the runtime's run root (one directory per VM: pidfile,
 *   QMP sockets, serial log). Keep it short: unix socket paths must stay
 *   under 108 bytes. Default `<data dir>/vm`, the data dir being `dv up`'s
 *   (`DV_DATA_DIR`, else /var/lib/dv as root, else ~/.local/share/dv).
 */

export const HYPERVISOR_SERVICE = "hypervisor";

/** DV_VM_RUN_DIR, or `<data dir>/vm` (the data dir as cli/up/command.ts defaultDataDir picks it). */
export function hypervisorRunDir(env: NodeJS.ProcessEnv, uid: number | undefined = process.getuid?.()): string {
  const explicit = env.DV_VM_RUN_DIR?.trim();
  if (explicit) return explicit;
  const dataDir = env.DV_DATA_DIR?.trim() || (uid === 0 ? "/var/lib/dv" : join(env.XDG_DATA_HOME?.trim() || join(homedir(), ".local", "share"), "dv"));
  return join(dataDir, "vm");
}

export function openHypervisorRuntime(context: WorkerServiceContext): QemuRuntime {
  return new QemuRuntime({ runRoot: hypervisorRunDir(context.env) });
}

registerWorkerService({
  service: HYPERVISOR_SERVICE,
  description: "VMs on this machine's QEMU (tcg): vm-start (converging), vm-stop (ACPI, quit, kill), vm-reboot, vm-status",
  handlers: (context) => createHypervisorHandlers(openHypervisorRuntime(context)),
});
