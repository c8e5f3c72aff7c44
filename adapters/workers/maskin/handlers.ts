import { z } from "zod";
import { loadHost } from "../../../commands/maskin/index.ts";
import type { CommandStore } from "../../../commands/pipeline.ts";
import { wipeInProgress, type HostState } from "../../../domain/maskin/index.ts";
import { BmcAuthError, BmcCommandError, BmcUnreachableError, BmcUnsupportedError, isBmcError, type BmcExchange, type PowerState } from "../../bmc/index.ts";
import { BmcEndpointUnavailableError } from "../../secrets/bmc.ts";
import { SecretKeyMismatchError, SecretNotFoundError } from "../../secrets/store.ts";
import { WorkError, type WorkContext, type WorkHandler } from "../worker.ts";
import { BmcAccess, HostNotInInventoryError } from "./bmc.ts";

/**
 * The maskin worker's actions (`dv.maskin.cmd.<action>.<datacenter>`, see
 * domain/maskin/README.md). Each converges: it reads the BMC first and acts
 * only when the hardware is not already where the request wants it, so a
 * request delivered again (the worker was killed mid-provisioning and
 * JetStream redelivers) does not power-cycle a node a second time.
 *
 * - `power {hostId, operation}`: `status` reads only; `on` / `off` / `soft`
 *   act only when the chassis is not already on / off; `reset` and `cycle`
 *   on a chassis that is off power it on instead (nothing to restart), and
 *   are the only operations that act on a node already in the wanted state:
 *   ask for them only when a restart is the point (the provisioning saga
 *   asks for `on`). `on`, `cycle` and `reset` of a provisioning task first
 *   read the host's stream: see "Power on during provisioning" below.
 * - `bootdev {hostId, device: pxe|disk}`: one-time boot override, verified by
 *   reading it back (the driver does); setting it again is harmless.
 * There is no `wipe` action: a wipe is the release saga netbooting the wipe
 * image through the boot service (domain/maskin/README.md, "Release and
 * wipe"); the worker only sets the boot device and the power for it. A
 * `wipe` request (an older saga) finds no handler and fails permanently.
 *
 * Output always holds `hostId` and `exchanges` (the BMC exchanges of this
 * request: operation, target, argv/URL, timing, exit code, outcome, stderr
 * summary; never the password). Failures are WorkErrors: `bmc_unreachable`
 * (transient, dependency `bmc <hostId>`: the saga blocks the task on it),
 * `bmc_command_failed` (transient), `bmc_auth_failed`, `bmc_unsupported`,
 * `bmc_not_configured`, `bmc_credential_unavailable`, `host_not_found`,
 * `invalid_payload` (permanent).
 */

/*
 * Power on during provisioning: converge on facts, not on the chassis alone.
 *
 * Reading the BMC is not enough to make a redelivered power-on harmless: the
 * provisioning's installer powers the machine off when it is done, so a
 * power-on request that comes again after the install (the worker was killed
 * after the BMC call, JetStream redelivered after the ack wait) reads "off"
 * and would power the freshly installed host on a second time. So when the
 * request's task is the one provisioning the host (the host stream's
 * provisioning names `request.taskId`; a `dvce host power` task never does),
 * `on` / `cycle` / `reset` first read the host's stream (loadHost): if this
 * provisioning already shows HostNetbootFetched, HostInstallReported or
 * HostProvisioned, the earlier power-on evidently took effect (the host
 * netbooted, which it only does powered on), and the answer is success
 * `{changed: false, action: "none", reason: "already took effect: ..."}`
 * without touching the BMC. Otherwise the BMC is read and the handler
 * converges as for any request; when that means acting, the stream is read
 * once more right before the BMC call: the boot service records the fetch
 * before it serves the script and the installer powers off only after that,
 * so a chassis that read "off" because the install already ran is always
 * seen by this second read (no window between "no fact yet" and "off").
 *
 * The crash windows of a provisioning power-on (a crash is a SIGKILL: no
 * answer, no ack; JetStream redelivers after the maskin ack wait,
 * DV_MASKIN_ACK_WAIT_MS, service.ts; the saga may also send the step again
 * as a new request of the same task; both are handled the same way):
 * 1. Before the BMC call: nothing happened to the hardware. The next delivery
 *    finds no fact (the machine was never told to start, so it cannot have
 *    netbooted for this task) and the chassis off: it powers on, once. Had
 *    someone else powered it on meanwhile, it reads "on" and does nothing.
 * 2. After the BMC call, before the answer: the machine is on its way. The
 *    next delivery either finds a fact (netboot fetched, install reported,
 *    provisioned: none, without the BMC), or no fact yet and the chassis on
 *    (still booting or installing: nothing needed). It could find "off" only
 *    if the machine stopped before fetching its script (died in firmware,
 *    lost power): then nothing took effect that anyone can see, and powering
 *    on is the right retry.
 * 3. After the answer, before the ack: the result is stored in DV_RESULTS
 *    (Nats-Msg-Id `<requestId>:result`) and the saga goes on with it. The
 *    redelivered request runs again: a fact or a chassis that is on makes it
 *    a no-op (a host installed and powered off meanwhile has its facts), and
 *    its answer, the same msg id, is deduplicated by JetStream or ignored by
 *    the saga for a step already done.
 * In every case the machine is powered on at most once per provisioning
 * unless it provably never got as far as netbooting.
 */

export const PowerOperationSchema = z.enum(["status", "on", "off", "soft", "cycle", "reset"]);
export type PowerOperation = z.infer<typeof PowerOperationSchema>;

export const PowerPayloadSchema = z.object({ hostId: z.string().min(1), operation: PowerOperationSchema });
export const BootdevPayloadSchema = z.object({ hostId: z.string().min(1), device: z.enum(["pxe", "disk"]) });

/** What `power` answers. */
export interface PowerOutput {
  readonly hostId: string;
  readonly operation: PowerOperation;
  /** Power as read before acting. */
  readonly before: PowerState;
  /** What was done: null when nothing was needed (the chassis was already there). */
  readonly action: "powerOn" | "powerOff" | "softOff" | "powerCycle" | "powerReset" | null;
  readonly changed: boolean;
  /** Power as read after acting (`soft` off: the OS may still be shutting down, so it may read on). */
  readonly after: PowerState;
  readonly exchanges: BmcExchange[];
}

/** What `power` answers when the provisioning's facts show an earlier power-on took effect (the BMC is not touched). */
export interface PowerTookEffectOutput {
  readonly hostId: string;
  readonly operation: PowerOperation;
  readonly action: "none";
  readonly changed: false;
  /** "already took effect: netboot fetched at …". */
  readonly reason: string;
  /** The facts of the host stream it decided on. */
  readonly evidence: ProvisioningEvidence;
  /** Power as read before (only when the facts turned up between reading the chassis and acting). */
  readonly before?: PowerState;
  readonly deliveryCount: number;
  readonly exchanges: BmcExchange[];
}

export interface ProvisioningEvidence {
  readonly taskId: string;
  readonly netbootFetchedAt: string | null;
  readonly installReportedAt: string | null;
  readonly provisioned: boolean;
  /** For a release task: when its wipe image was served and when the wiper reported (absent for a provisioning). */
  readonly wipeNetbootFetchedAt?: string | null;
  readonly wipeReportedAt?: string | null;
  /** For a release task's power off: its wipe was asked for and has not reported yet (powering off would interrupt it). */
  readonly wipeRunningSince?: string;
}

export interface MaskinHandlersOptions {
  readonly access: BmcAccess;
  /** Where the host streams are read (the provisioning facts); default the inventory's store (`access.store`). */
  readonly hosts?: Pick<CommandStore, "readStream">;
}

/** The operations that start a machine, so that doing them twice during provisioning could netboot or restart it again. */
const STARTS_MACHINE: ReadonlySet<PowerOperation> = new Set(["on", "cycle", "reset"]);
/** The operations that stop a machine, so that doing them again during a release's wipe would cut the wipe short. */
const STOPS_MACHINE: ReadonlySet<PowerOperation> = new Set(["off", "soft"]);

/**
 * The facts showing that task `taskId`'s provisioning of the host got past
 * its power-on: null when the host is not being provisioned by that task or
 * has not netbooted for it yet.
 */
export function provisioningEvidence(state: HostState, taskId: string): ProvisioningEvidence | null {
  const p = state.provisioning;
  if (!p || p.taskId !== taskId) return null;
  const provisioned = state.state === "ready";
  if (!p.netbootFetchedAt && !p.installReportedAt && !provisioned) return null;
  return { taskId, netbootFetchedAt: p.netbootFetchedAt, installReportedAt: p.installReportedAt, provisioned };
}

/** The facts showing that release task `taskId`'s power-on for its wipe took effect (the wipe image was served or reported); null otherwise. */
export function wipeEvidence(state: HostState, taskId: string): ProvisioningEvidence | null {
  const wipe = state.wipe ?? null;
  if (!wipe || wipe.taskId !== taskId || (!wipe.netbootFetchedAt && !wipe.reportedAt)) return null;
  return { taskId, netbootFetchedAt: null, installReportedAt: null, provisioned: false, wipeNetbootFetchedAt: wipe.netbootFetchedAt, wipeReportedAt: wipe.reportedAt };
}

/**
 * A release task's power off while its own wipe runs (requested, not yet
 * reported): the step that powered the host off before the wipe is being
 * redelivered (its answer was not acked), and acting on it now would cut
 * the wipe short. The wipe step after the report (`power-off-wiped`) finds
 * the wipe ended and acts.
 */
export function wipeRunningEvidence(state: HostState, taskId: string): ProvisioningEvidence | null {
  const wipe = wipeInProgress(state);
  if (!wipe || wipe.taskId !== taskId) return null;
  return { taskId, netbootFetchedAt: null, installReportedAt: null, provisioned: false, wipeNetbootFetchedAt: wipe.netbootFetchedAt, wipeRunningSince: wipe.requestedAt };
}

function tookEffectReason(evidence: ProvisioningEvidence): string {
  if (evidence.wipeRunningSince) return `not now: this task's wipe has run since ${evidence.wipeRunningSince} and not reported yet (powering off would interrupt it)`;
  const facts = [
    evidence.wipeNetbootFetchedAt ? `wipe image fetched at ${evidence.wipeNetbootFetchedAt}` : null,
    evidence.wipeReportedAt ? `wipe reported at ${evidence.wipeReportedAt}` : null,
    evidence.netbootFetchedAt ? `netboot fetched at ${evidence.netbootFetchedAt}` : null,
    evidence.installReportedAt ? `install reported at ${evidence.installReportedAt}` : null,
    evidence.provisioned ? "host provisioned" : null,
  ].filter((f): f is string => f !== null);
  return `already took effect: ${facts.join(", ")}`;
}

export function createMaskinHandlers(options: MaskinHandlersOptions): Record<"power" | "bootdev", WorkHandler> {
  const { access } = options;
  const hosts = options.hosts ?? access.store;

  /** The provisioning facts of `taskId` on the host, when the operation starts a machine (see "Power on during provisioning"). */
  const tookEffect = async (hostId: string, operation: PowerOperation, taskId: string): Promise<ProvisioningEvidence | null> => {
    if (STOPS_MACHINE.has(operation)) return wipeRunningEvidence((await loadHost(hosts, hostId)).state, taskId);
    if (!STARTS_MACHINE.has(operation)) return null;
    const { state } = await loadHost(hosts, hostId);
    return provisioningEvidence(state, taskId) ?? wipeEvidence(state, taskId);
  };

  const power: WorkHandler = async (request, context) => {
    const { hostId, operation } = parsePayload(PowerPayloadSchema, request.payload);
    const skipped = (evidence: ProvisioningEvidence, exchanges: BmcExchange[], before?: PowerState): PowerTookEffectOutput => ({
      hostId,
      operation,
      action: "none",
      changed: false,
      reason: tookEffectReason(evidence),
      evidence,
      ...(before ? { before } : {}),
      deliveryCount: context.deliveryCount,
      exchanges,
    });
    let evidence: ProvisioningEvidence | null;
    try {
      evidence = await tookEffect(hostId, operation, request.taskId);
    } catch (error) {
      throw toWorkError(error, hostId);
    }
    if (evidence) return { ...skipped(evidence, []) };
    return withBmc(hostId, context, async ({ driver, exchanges }) => {
      const before = await driver.powerStatus();
      if (operation === "status") return { hostId, operation, before, action: null, changed: false, after: before, exchanges } satisfies PowerOutput;
      const action = plan(operation, before);
      if (action) {
        // Read the facts again right before acting: a chassis read "off" because the install already ran has them by now.
        const late = await tookEffect(hostId, operation, request.taskId);
        if (late) return { ...skipped(late, exchanges, before) };
        checkNotCancelled(context);
        await driver[action]();
      }
      const after = action ? await driver.powerStatus() : before;
      return { hostId, operation, before, action, changed: action !== null, after, exchanges } satisfies PowerOutput;
    });
  };

  const bootdev: WorkHandler = async (request, context) => {
    const { hostId, device } = parsePayload(BootdevPayloadSchema, request.payload);
    return withBmc(hostId, context, async ({ driver, exchanges }) => {
      await driver.setBootDevice(device);
      return { hostId, device, verified: true, exchanges };
    });
  };

  async function withBmc(hostId: string, context: WorkContext, work: (bmc: { driver: Awaited<ReturnType<BmcAccess["open"]>>["driver"]; exchanges: BmcExchange[] }) => Promise<Record<string, unknown>>) {
    let exchanges: BmcExchange[] = [];
    try {
      const opened = await access.open(hostId);
      exchanges = opened.exchanges;
      checkNotCancelled(context);
      return await work(opened);
    } catch (error) {
      throw toWorkError(error, hostId, exchanges);
    }
  }

  return { power, bootdev };
}

/** The action that brings `before` where `operation` wants it; null when it is there already. */
export function plan(operation: Exclude<PowerOperation, "status">, before: PowerState): PowerOutput["action"] {
  switch (operation) {
    case "on":
      return before === "on" ? null : "powerOn";
    case "off":
      return before === "off" ? null : "powerOff";
    case "soft":
      return before === "off" ? null : "softOff";
    case "cycle":
      return before === "off" ? "powerOn" : "powerCycle";
    case "reset":
      return before === "off" ? "powerOn" : "powerReset";
  }
}

function parsePayload<T>(schema: z.ZodType<T>, payload: unknown): T {
  const parsed = schema.safeParse(payload);
  if (!parsed.success) {
    throw new WorkError(`invalid payload: ${parsed.error.issues.map((i) => `${i.path.join(".") || "payload"}: ${i.message}`).join("; ")}`, {
      transient: false,
      code: "invalid_payload",
    });
  }
  return parsed.data;
}

function checkNotCancelled(context: WorkContext): void {
  if (context.signal.aborted) throw new WorkError("cancelled before acting", { transient: true, code: "cancelled" });
}

/** A BMC (or lookup) failure as the saga understands it; the message names the failing exchange, never the password. */
export function toWorkError(error: unknown, hostId: string, exchanges: readonly BmcExchange[] = []): WorkError {
  if (error instanceof WorkError) return error;
  const why = (e: Error) => {
    const last = isBmcError(e) ? e.exchange : exchanges[exchanges.length - 1];
    return last && last.stderrSummary ? `${e.message} (${last.operation} ${last.target}: ${last.stderrSummary})` : e.message;
  };
  if (error instanceof BmcUnreachableError) return new WorkError(why(error), { transient: true, code: "bmc_unreachable", dependency: `bmc ${hostId}` });
  if (error instanceof BmcAuthError) return new WorkError(why(error), { transient: false, code: "bmc_auth_failed" });
  if (error instanceof BmcUnsupportedError) return new WorkError(why(error), { transient: false, code: "bmc_unsupported" });
  if (error instanceof BmcCommandError) return new WorkError(why(error), { transient: true, code: "bmc_command_failed" });
  if (error instanceof BmcEndpointUnavailableError) return new WorkError(error.message, { transient: false, code: "bmc_not_configured" });
  if (error instanceof HostNotInInventoryError) return new WorkError(error.message, { transient: false, code: "host_not_found" });
  if (error instanceof SecretNotFoundError || error instanceof SecretKeyMismatchError) {
    return new WorkError(`the BMC credential of host ${hostId} cannot be read: ${error.message}`, { transient: false, code: "bmc_credential_unavailable" });
  }
  return new WorkError(error instanceof Error ? error.message : String(error), { transient: true, code: "maskin_worker_error" });
}
