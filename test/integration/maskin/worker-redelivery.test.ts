import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBmcDriver, type BmcDriver } from "../../../adapters/bmc/index.ts";
import { BmcAccess, createMaskinHandlers, type PowerOutput, type PowerTookEffectOutput } from "../../../adapters/workers/maskin/index.ts";
import type { WorkContext } from "../../../adapters/workers/worker.ts";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { bmcOf, context, mac, request, startMaskinLab, type MaskinLab } from "./worker-support.ts";

/**
 * A provisioning's power-on delivered again (the worker was killed after the
 * BMC call and before its answer; JetStream redelivers once the ack wait is
 * over): the worker decides on the host stream's facts first and on the
 * chassis second, against real ipmi_sim BMCs (no QEMU). See "Power on during
 * provisioning" in adapters/workers/maskin/handlers.ts.
 */

let lab: MaskinLab;
let handlers: ReturnType<typeof createMaskinHandlers>;
/** Runs once after the next chassis read (the boot service recording a fetch between the worker's reads). */
let afterNextStatusRead: (() => Promise<void>) | null = null;

beforeAll(async () => {
  lab = await startMaskinLab(5, 0, (b) => [
    { name: "node-fetched", serial: "SN1", macs: [mac()], bmc: bmcOf(b[0]!) },
    { name: "node-requested", serial: "SN2", macs: [mac()], bmc: bmcOf(b[1]!) },
    { name: "node-installed", serial: "SN3", macs: [mac()], bmc: bmcOf(b[2]!) },
    { name: "node-late", serial: "SN4", macs: [mac()], bmc: bmcOf(b[3]!) },
    { name: "node-wiped", serial: "SN5", macs: [mac()], bmc: bmcOf(b[4]!) },
  ]);
  const createDriver: typeof createBmcDriver = (endpoint, options) => {
    const real = createBmcDriver(endpoint, options);
    return new Proxy(real, {
      get(target, key) {
        if (key === "powerStatus") {
          return async () => {
            const state = await target.powerStatus();
            const hook = afterNextStatusRead;
            afterNextStatusRead = null;
            await hook?.();
            return state;
          };
        }
        const value = Reflect.get(target, key, target) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as BmcDriver;
  };
  handlers = createMaskinHandlers({ access: new BmcAccess({ store: lab.store, secrets: lab.secrets, datacenter: "osl1", timeoutMs: 4_000, createDriver }) });
});
afterAll(async () => {
  await lab?.dispose();
});

const id = (name: string) => lab.hostIds.get(name)!;
const redelivered = (): WorkContext => ({ signal: new AbortController().signal, progress: () => {}, workerId: "restarted-worker", deliveryCount: 2 });
const at = () => new Date().toISOString();
const hostCommand = (command: Record<string, unknown>) => executeHostCommand(lab.store, { at: at(), ...command }, context);
const fetched = (hostId: string) =>
  hostCommand({ type: "RecordNetbootFetched", hostId, mac: "52:54:00:00:00:01", tokenDigest: createHash("sha256").update(randomBytes(16)).digest("hex") });

/** The host's provisioning by a fresh task, up to "netboot requested" (what the saga records once power-on answered). */
async function provisioning(name: string): Promise<{ hostId: string; taskId: string }> {
  const hostId = id(name);
  const taskId = `task-${randomBytes(4).toString("hex")}`;
  await hostCommand({ type: "StartProvisioning", hostId, datacenter: "osl1", taskId, tenantId: "tenant-a", projectId: "project-a", environmentId: null, role: "worker" });
  await hostCommand({ type: "RecordNetbootRequested", hostId, taskId });
  return { hostId, taskId };
}

/** The same power request the saga sent for `taskId`'s power-on step, delivered again. */
function powerOn(hostId: string, taskId: string, operation = "on") {
  return handlers.power({ ...request("power", { hostId, operation }), taskId, step: "power-on" }, redelivered()) as Promise<unknown> as Promise<PowerOutput | PowerTookEffectOutput>;
}

const setsSince = async (bmc: number, since: number) => (await lab.sims.bmcs[bmc]!.chassisLog()).filter((c) => c.at >= since && c.op === "set").map((c) => c.args.join(" "));

describe("a redelivered provisioning power-on converges on the host's facts, then on the chassis", () => {
  it("the host already fetched its netboot script for this task (the installer ran and powered it off): success, nothing done, the BMC not even asked", async () => {
    const { hostId, taskId } = await provisioning("node-fetched");
    await fetched(hostId);
    const b = lab.sims.bmcs[0]!;
    expect(await b.power()).toBe("off");
    const start = Date.now();
    for (const operation of ["on", "cycle", "reset"]) {
      const out = (await powerOn(hostId, taskId, operation)) as PowerTookEffectOutput;
      expect(out).toMatchObject({ hostId, operation, action: "none", changed: false, exchanges: [], deliveryCount: 2 });
      expect(out.reason).toMatch(/^already took effect: netboot fetched at \d{4}-/);
      expect(out.evidence).toMatchObject({ taskId, provisioned: false });
    }
    expect(await b.chassisLog().then((log) => log.filter((c) => c.at >= start))).toEqual([]);
    expect(await b.power()).toBe("off");
  });

  it("the facts count only for the task that provisions the host: another task's power on (dvce host power on) reads the chassis and powers it on", async () => {
    const { hostId } = await provisioning("node-installed");
    await fetched(hostId);
    const b = lab.sims.bmcs[2]!;
    const start = Date.now();
    expect(await powerOn(hostId, "some-power-task")).toMatchObject({ before: "off", action: "powerOn", changed: true, after: "on" });
    expect(await setsSince(2, start)).toEqual(["power 1"]);
    await b.setPower("off");
  });

  it("no such fact and the machine off (the first delivery died before its BMC call): the redelivery powers it on, once", async () => {
    const { hostId, taskId } = await provisioning("node-requested");
    const start = Date.now();
    expect(await lab.sims.bmcs[1]!.power()).toBe("off");
    expect(await powerOn(hostId, taskId)).toMatchObject({ hostId, before: "off", action: "powerOn", changed: true, after: "on" });
    // ...and once it is on, a further delivery finds it on and does nothing.
    expect(await powerOn(hostId, taskId)).toMatchObject({ before: "on", action: null, changed: false });
    expect(await setsSince(1, start)).toEqual(["power 1"]);
    expect(await lab.sims.bmcs[1]!.power()).toBe("on");
  });

  it("a fetch recorded between reading the chassis (off) and acting on it is seen: nothing is done", async () => {
    const { hostId, taskId } = await provisioning("node-late");
    const start = Date.now();
    afterNextStatusRead = async () => {
      await fetched(hostId);
    };
    const out = (await powerOn(hostId, taskId)) as PowerTookEffectOutput;
    expect(out).toMatchObject({ action: "none", changed: false, before: "off" });
    expect(out.reason).toMatch(/netboot fetched at/);
    expect(out.exchanges.map((e) => e.operation)).toEqual(["powerStatus"]);
    expect(await setsSince(3, start)).toEqual([]);
    expect(await lab.sims.bmcs[3]!.power()).toBe("off");
  });
});

describe("a redelivered release power-on (the wipe) converges on the host's wipe facts", () => {
  it("before the wipe image was served it powers on; once it was served (the wiper then powers off), a redelivery does nothing", async () => {
    const hostId = id("node-wiped");
    const releaseTask = `release-${randomBytes(4).toString("hex")}`;
    await hostCommand({ type: "RequestWipe", hostId, datacenter: "osl1", taskId: releaseTask });
    const b = lab.sims.bmcs[4]!;
    const start = Date.now();
    expect(await powerOn(hostId, releaseTask)).toMatchObject({ before: "off", action: "powerOn", changed: true, after: "on" });
    // The release's first power off delivered again while the wipe runs: nothing (it would cut the wipe short); another task's off would act.
    const off = (await handlers.power({ ...request("power", { hostId, operation: "off" }), taskId: releaseTask, step: "power-off" }, redelivered())) as unknown as PowerTookEffectOutput;
    expect(off).toMatchObject({ action: "none", changed: false, exchanges: [] });
    expect(off.reason).toMatch(/^not now: this task's wipe has run since/);
    expect(await b.power()).toBe("on");
    // The wiper netbooted, wiped, and powered the machine off.
    await hostCommand({ type: "RecordWipeNetbootFetched", hostId, mac: "52:54:00:00:00:05", tokenDigest: createHash("sha256").update(randomBytes(16)).digest("hex") });
    await b.setPower("off");
    const out = (await powerOn(hostId, releaseTask)) as PowerTookEffectOutput;
    expect(out).toMatchObject({ action: "none", changed: false, exchanges: [] });
    expect(out.reason).toMatch(/^already took effect: wipe image fetched at \d{4}-/);
    expect(await setsSince(4, start)).toEqual(["power 1"]);
    expect(await b.power()).toBe("off");
  });
});
