import { z } from "zod";
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
 *   asks for `on`).
 * - `bootdev {hostId, device: pxe|disk}`: one-time boot override, verified by
 *   reading it back (the driver does); setting it again is harmless.
 * - `wipe {hostId}`: see wipe below.
 *
 * Output always holds `hostId` and `exchanges` (the BMC exchanges of this
 * request: operation, target, argv/URL, timing, exit code, outcome, stderr
 * summary; never the password). Failures are WorkErrors: `bmc_unreachable`
 * (transient, dependency `bmc <hostId>`: the saga blocks the task on it),
 * `bmc_command_failed` (transient), `bmc_auth_failed`, `bmc_unsupported`,
 * `bmc_not_configured`, `bmc_credential_unavailable`, `host_not_found`,
 * `invalid_payload` (permanent).
 */

export const PowerOperationSchema = z.enum(["status", "on", "off", "soft", "cycle", "reset"]);
export type PowerOperation = z.infer<typeof PowerOperationSchema>;

export const PowerPayloadSchema = z.object({ hostId: z.string().min(1), operation: PowerOperationSchema });
export const BootdevPayloadSchema = z.object({ hostId: z.string().min(1), device: z.enum(["pxe", "disk"]) });
export const WipePayloadSchema = z.object({ hostId: z.string().min(1) });

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

export interface MaskinHandlersOptions {
  readonly access: BmcAccess;
}

export function createMaskinHandlers(options: MaskinHandlersOptions): Record<"power" | "bootdev" | "wipe", WorkHandler> {
  const { access } = options;

  const power: WorkHandler = async (request, context) => {
    const { hostId, operation } = parsePayload(PowerPayloadSchema, request.payload);
    return withBmc(hostId, context, async ({ driver, exchanges }) => {
      const before = await driver.powerStatus();
      if (operation === "status") return { hostId, operation, before, action: null, changed: false, after: before, exchanges } satisfies PowerOutput;
      const action = plan(operation, before);
      if (action) {
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

  /**
   * Wipe: there is no disk to wipe in the lab (the "server" is a QEMU VM whose
   * disk the test throws away, and nothing here can reach a host's disks
   * except through a booted OS). So this converges trivially: it checks the
   * host is in the inventory and answers what a real wipe would do, without
   * doing it. A real implementation netboots a wipe image (like the
   * installer) and waits for its callback.
   */
  const wipe: WorkHandler = async (request) => {
    const { hostId } = parsePayload(WipePayloadSchema, request.payload);
    try {
      await access.host(hostId);
    } catch (error) {
      throw toWorkError(error, hostId);
    }
    return {
      hostId,
      wiped: false,
      simulated: true,
      wouldDo: ["netboot a wipe image", "blkdiscard / overwrite every local disk", "report through the callback"],
      exchanges: [],
    };
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

  return { power, bootdev, wipe };
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
