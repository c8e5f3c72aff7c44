import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BmcAccess, createMaskinHandlers, type PowerOutput } from "../../../adapters/workers/maskin/index.ts";
import { WorkError } from "../../../adapters/workers/worker.ts";
import { bmcOf, mac, request, startMaskinLab, workContext, type MaskinLab } from "./worker-support.ts";

let lab: MaskinLab;
let handlers: ReturnType<typeof createMaskinHandlers>;

beforeAll(async () => {
  // bmc1: node-01 (and node-badpw with a wrong password); bmc2: node-02; bmc3 stopped: node-dead.
  lab = await startMaskinLab(3, 1, (b) => [
    { name: "node-01", serial: "SN1", macs: [mac()], bmc: bmcOf(b[0]!) },
    { name: "node-02", serial: "SN2", macs: [mac()], bmc: bmcOf(b[1]!) },
    { name: "node-badpw", serial: "SN3", macs: [mac()], bmc: bmcOf(b[0]!, "not-the-password") },
    { name: "node-dead", serial: "SN4", macs: [mac()], bmc: bmcOf(b[2]!) },
    { name: "node-nobmc", serial: "SN5", macs: [mac()] },
  ]);
  handlers = createMaskinHandlers({ access: new BmcAccess({ store: lab.store, secrets: lab.secrets, datacenter: "osl1", timeoutMs: 4_000 }) });
});
afterAll(async () => {
  await lab?.dispose();
});

const id = (name: string) => lab.hostIds.get(name)!;
const power = (name: string, operation: string) => handlers.power(request("power", { hostId: id(name), operation }), workContext()) as unknown as Promise<PowerOutput>;

async function failure(promise: Promise<unknown>): Promise<WorkError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(WorkError);
    return error as WorkError;
  }
  throw new Error("expected a WorkError");
}

describe("maskin worker against ipmi_sim", () => {
  it("power on twice: the chassis sees exactly one `set power 1`; the second answer says nothing was needed", async () => {
    const b = lab.sims.bmcs[0]!;
    const start = Date.now();
    expect(await b.power()).toBe("off");
    const first = await power("node-01", "on");
    expect(first).toMatchObject({ hostId: id("node-01"), operation: "on", before: "off", action: "powerOn", changed: true, after: "on" });
    const second = await power("node-01", "on");
    expect(second).toMatchObject({ before: "on", action: null, changed: false, after: "on" });
    const sets = (await b.chassisLog()).filter((c) => c.at >= start && c.op === "set").map((c) => c.args.join(" "));
    expect(sets).toEqual(["power 1"]);
    expect(await b.power()).toBe("on");
    // The BMC exchanges are in the output, the password is not.
    expect(second.exchanges.map((e) => [e.operation, e.outcome])).toEqual([["powerStatus", "ok"]]);
    expect(first.exchanges.map((e) => e.operation)).toEqual(["powerStatus", "powerOn", "powerStatus"]);
    expect(first.exchanges[1]!.command.join(" ")).toContain("chassis power on");
    expect(JSON.stringify([first, second])).not.toContain(b.password);
  });

  it("status reads only; off converges; cycle and reset of an off chassis power it on", async () => {
    const b = lab.sims.bmcs[1]!;
    const start = Date.now();
    expect(await power("node-02", "status")).toMatchObject({ before: "off", action: null, after: "off" });
    expect(await power("node-02", "off")).toMatchObject({ action: null, changed: false });
    expect(await power("node-02", "cycle")).toMatchObject({ before: "off", action: "powerOn", after: "on" });
    expect(await power("node-02", "off")).toMatchObject({ before: "on", action: "powerOff", after: "off" });
    const sets = (await b.chassisLog()).filter((c) => c.at >= start && c.op === "set").map((c) => c.args.join(" "));
    expect(sets).toEqual(["power 1", "power 0"]);
  });

  it("bootdev pxe is set and verified by reading it back", async () => {
    const b = lab.sims.bmcs[1]!;
    const out = await handlers.bootdev(request("bootdev", { hostId: id("node-02"), device: "pxe" }), workContext());
    expect(out).toMatchObject({ hostId: id("node-02"), device: "pxe", verified: true });
    expect(await b.bootFlag()).toBe("pxe");
    expect(JSON.stringify(out)).not.toContain(b.password);
  });

  it("an unreachable BMC is a transient failure with code bmc_unreachable and the dependency to block on", async () => {
    const error = await failure(power("node-dead", "on"));
    expect(error).toMatchObject({ transient: true, code: "bmc_unreachable", dependency: `bmc ${id("node-dead")}` });
  });

  it("a wrong password is a permanent bmc_auth_failed that never shows the password", async () => {
    const error = await failure(power("node-badpw", "status"));
    expect(error).toMatchObject({ transient: false, code: "bmc_auth_failed" });
    expect(error.message).not.toContain("not-the-password");
  });

  it("bad payloads, unknown hosts and hosts without a BMC fail permanently", async () => {
    expect(await failure(handlers.power(request("power", { hostId: id("node-01"), operation: "explode" }), workContext()))).toMatchObject({ transient: false, code: "invalid_payload" });
    expect(await failure(handlers.power(request("power", { hostId: "nope", operation: "on" }), workContext()))).toMatchObject({ transient: false, code: "host_not_found" });
    expect(await failure(power("node-nobmc", "on"))).toMatchObject({ transient: false, code: "bmc_not_configured" });
  });

  it("has no wipe action: a wipe is the release saga netbooting the wipe image, not a worker's no-op", () => {
    expect(Object.keys(handlers).sort()).toEqual(["bootdev", "power"]);
  });
});
