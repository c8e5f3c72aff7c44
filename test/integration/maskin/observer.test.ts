import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BmcAccess, PowerObserver } from "../../../adapters/workers/maskin/index.ts";
import { hostStreamId } from "../../../domain/maskin/index.ts";
import { bmcOf, mac, startMaskinLab, type MaskinLab } from "./worker-support.ts";

let lab: MaskinLab;
let access: BmcAccess;

beforeAll(async () => {
  // bmc1: node-01; bmc2 stopped: node-dead (every read fails).
  lab = await startMaskinLab(2, 1, (b) => [
    { name: "node-01", serial: "SN1", macs: [mac()], bmc: bmcOf(b[0]!) },
    { name: "node-dead", serial: "SN2", macs: [mac()], bmc: bmcOf(b[1]!) },
    { name: "node-nobmc", serial: "SN3", macs: [mac()] },
  ]);
  access = new BmcAccess({ store: lab.store, secrets: lab.secrets, datacenter: "osl1", timeoutMs: 3_000 });
});
afterAll(async () => {
  await lab?.dispose();
});

const id = (name: string) => lab.hostIds.get(name)!;
async function recorded(name: string) {
  const events = await lab.store.readStream(hostStreamId(id(name)));
  return events.filter((e) => e.type === "HostPowerStateObserved").map((e) => e.data as { state: string; previousState: string | null });
}

describe("power observer against ipmi_sim", () => {
  it("records a change only after two agreeing reads; one flipped answer records nothing; it never acts", async () => {
    const b = lab.sims.bmcs[0]!;
    const start = Date.now();
    const observer = new PowerObserver({ access, store: lab.store });
    await b.setPower("on");

    const r1 = await observer.round();
    expect(r1.hosts).toBe(2); // node-nobmc has no BMC
    expect(r1.recorded).toEqual([]);
    expect(await recorded("node-01")).toEqual([]);
    const r2 = await observer.round();
    expect(r2.recorded.map((o) => [o.hostId, o.state, o.previousState])).toEqual([[id("node-01"), "on", null]]);
    expect(await recorded("node-01")).toEqual([expect.objectContaining({ state: "on", previousState: null })]);

    // One flipped answer: off once, then on again. Nothing recorded.
    await b.setPower("off");
    expect((await observer.round()).recorded).toEqual([]);
    expect(observer.stateOf(id("node-01"))?.pending?.state).toBe("off");
    await b.setPower("on");
    expect((await observer.round()).recorded).toEqual([]);
    expect(await recorded("node-01")).toHaveLength(1);

    // A real change: two reads agree.
    await b.setPower("off");
    expect((await observer.round()).recorded).toEqual([]);
    const r6 = await observer.round();
    expect(r6.recorded.map((o) => [o.state, o.previousState])).toEqual([["off", "on"]]);
    expect(await recorded("node-01")).toEqual([
      expect.objectContaining({ state: "on", previousState: null }),
      expect.objectContaining({ state: "off", previousState: "on" }),
    ]);

    // The unreachable BMC: failed reads, counted, never recorded.
    expect(r6.reads.find((r) => r.hostId === id("node-dead"))?.read.ok).toBe(false);
    expect(observer.stateOf(id("node-dead"))?.consecutiveFailures).toBe(6);
    expect(await recorded("node-dead")).toEqual([]);

    // The observer only read: the chassis saw no `set` at all.
    expect((await b.chassisLog()).filter((c) => c.at >= start && c.op === "set")).toEqual([]);
  });

  it("a restarted observer starts from the last recorded state and does not record it again", async () => {
    const observer = new PowerObserver({ access, store: lab.store });
    expect(observer.stateOf(id("node-01"))).toBeNull();
    await observer.round();
    await observer.round();
    expect(await recorded("node-01")).toHaveLength(2);
    expect(observer.stateOf(id("node-01"))).toMatchObject({ accepted: "off", pending: null });
  });

  it("runs periodically once started and stops cleanly", async () => {
    const b = lab.sims.bmcs[0]!;
    const observer = new PowerObserver({ access, store: lab.store, intervalMs: 50 });
    await b.setPower("on");
    observer.start();
    const deadline = Date.now() + 30_000;
    while ((await recorded("node-01")).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await observer.stop();
    expect((await recorded("node-01")).at(-1)).toMatchObject({ state: "on", previousState: "off" });
  });
});
