
/**
 * The VM runtime port: what Maskin's per-hypervisor worker may ask of the
 * machine that runs VMs. `runtime.ts` implements it with QEMU driven over
 * QMP (no libvirt); sagas and workers import this file only.
 *
 * Every operation converges rather than acts blindly: `start` of a VM whose
 * process already runs returns that process, `stop` of an absent VM answers
 * `absent`, and `list` shows every process this runtime owns, with or without
 * a VM record, so a reconciler can see drift both ways.
 */

export type VmBoot =
  /** Direct kernel boot (`-kernel/-initrd/-append`): kernel+initrd images. */
  | { readonly kind: "kernel"; readonly kernel: string; readonly initrd?: string; readonly append?: string }
  /** Boot from the VM's disk (SeaBIOS). */
  | { readonly kind: "disk" };

export interface VmDiskSpec {
  /** The VM's own qcow2 overlay (each running VM needs its own: image locking). */
  readonly overlay: string;
  /** The shared base (qcow2) the overlay is created on when it does not exist yet. */
  readonly base?: string;
  /** Virtual size of a new overlay, e.g. "2G" (default: the base's size). */
  readonly size?: string;
}

export interface VmNicSpec {
  /** QEMU NIC model (default virtio-net-pci; `e1000` for guests without virtio drivers). */
  readonly model?: string;
  /** Host port on 127.0.0.1 forwarded to the guest's :22 (user-mode networking). */
  readonly sshHostPort?: number;
  /** Overrides the derived MAC (default: vmMac(vmId, index)). */
  readonly mac?: string;
}

export interface VmSpec {
  /** Becomes a directory name and the QEMU guest name: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}. */
  readonly vmId: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly boot: VmBoot;
  readonly disk?: VmDiskSpec;
  /** NICs in order; each gets user-mode networking (until the network service exists). */
  readonly nics?: readonly VmNicSpec[];
  /** A NoCloud seed ISO (see seed.ts), attached read-only as a CD-ROM. */
  readonly seedIso?: string;
  /** Start with the CPUs stopped (`-S`): status `prelaunch` until `resume`. */
  readonly startPaused?: boolean;
}

/** QEMU's RunState (query-status) plus what the runtime sees from outside. */
export type VmRunState =
  | "running"
  | "paused"
  | "prelaunch"
  | "shutdown"
  | "suspended"
  | "guest-panicked"
  | "internal-error"
  | "io-error"
  | "inmigrate"
  | "postmigrate"
  | "finish-migrate"
  | "restore-vm"
  | "save-vm"
  | "watchdog"
  | "colo"
  | "debug"
  /** No live QEMU process for this VM (never started, stopped, killed or crashed). */
  | "absent"
  /** The process lives but QMP does not answer (starting, exiting or hung). */
  | "unresponsive";

export interface VmStatus {
  readonly vmId: string;
  readonly state: VmRunState;
  readonly pid: number | null;
}

export interface VmStartResult {
  readonly vmId: string;
  readonly pid: number;
  /** True when the VM's process was already running: nothing was started. */
  readonly alreadyRunning: boolean;
  /** The MAC of each NIC, in order. */
  readonly macs: readonly string[];
  /** Milliseconds from spawning QEMU to QMP answering (0 when already running). */
  readonly startMs: number;
}

export type VmStopMethod = "acpi" | "quit" | "kill" | "absent";

export interface VmStopResult {
  readonly vmId: string;
  /** How the process ended: the guest obeyed ACPI, QMP quit, SIGKILL, or it was not running. */
  readonly method: VmStopMethod;
  readonly durationMs: number;
}

export interface VmProcess {
  readonly vmId: string;
  readonly pid: number;
  readonly runDir: string;
}

/** A QEMU event (QMP `event` line): STOP, RESUME, RESET, POWERDOWN, SHUTDOWN, ... */
export interface VmEvent {
  readonly event: string;
  readonly data: Readonly<Record<string, unknown>>;
  readonly timestampMs: number;
}

export interface VmEventStream {
  /** Ends when QEMU exits or `close` is called. */
  readonly events: AsyncIterableIterator<VmEvent>;
  /** Resolves when the watch connection is closed (by QEMU exiting or by `close`). */
  readonly closed: Promise<void>;
  close(): void;
}

export interface VmRuntime {
  start(spec: VmSpec): Promise<VmStartResult>;
  status(vmId: string): Promise<VmStatus>;
  /** ACPI power button, then QMP `quit` once `acpiTimeoutMs` passed, then SIGKILL. */
  stop(vmId: string, options?: { acpiTimeoutMs?: number }): Promise<VmStopResult>;
  /** Hard reset (`system_reset`); resolves once QEMU reported the RESET event. */
  reboot(vmId: string): Promise<void>;
  /** Continues CPUs stopped by `startPaused` or QMP `stop`. */
  resume(vmId: string): Promise<void>;
  /** Events of a running VM, over a monitor of their own (does not block the other operations). */
  watch(vmId: string): Promise<VmEventStream>;
  /** SIGKILL, then wait until the process is gone (zombies count as gone). */
  kill(vmId: string): Promise<VmStopResult>;
  /** Live QEMU processes this runtime owns, found from its run directories. */
  list(): Promise<VmProcess[]>;
  /** Path of the VM's serial console log (kept across starts). */
  consoleLogPath(vmId: string): string;
  /**
   * Up to `maxBytes` of the serial log from `offset` (a byte offset; 0 = the
   * beginning) and the offset to read from next: calling it again with
   * `nextOffset` follows the console (`dvce vm console --follow`).
   */
  readConsole(vmId: string, options?: { offset?: number; maxBytes?: number }): Promise<VmConsoleChunk>;
}

export interface VmConsoleChunk {
  /** The bytes read, as UTF-8 (a character split at the chunk's end is completed by the next read). */
  readonly text: string;
  readonly nextOffset: number;
  /** The log's size when read. */
  readonly size: number;
}

const VM_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function assertVmId(vmId: string): void {
  if (!VM_ID.test(vmId)) throw new Error(`invalid VM id ${JSON.stringify(vmId)}: want ${VM_ID.source}`);
}

/** NIC MACs are the domain's: derived from the VM id and NIC index (domain/maskin/vm/mac.ts). */
export { vmMac } from "../../domain/maskin/vm/mac.ts";
