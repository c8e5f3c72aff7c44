import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IpmitoolDriver, type IpmitoolDriverOptions } from "../../../adapters/bmc/ipmitool.ts";
import {
  BmcAuthError,
  BmcUnreachableError,
  BmcUnsupportedError,
  isBmcError,
  type BmcExchange,
} from "../../../adapters/bmc/port.ts";
import { KeyedMutex } from "../../../adapters/bmc/serial.ts";
import { startIpmiSims, waitFor, type IpmiSimLab, type SimulatedBmc } from "../../support/ipmi-sim.ts";

/**
 * The ipmitool driver against real simulated BMCs: OpenIPMI's ipmi_sim, one
 * process per BMC on its own UDP port, driven by the real ipmitool binary.
 * What the BMC did is checked on its "hardware" side (the chassis program's
 * state files and timestamped log), not only through the driver's answers.
 */

const PASSWORD = randomBytes(12).toString("base64url"); // 16 characters, unique per run
const exchanges: BmcExchange[] = [];
const errors: unknown[] = [];

let lab: IpmiSimLab;
let bare: IpmiSimLab; // a BMC without chassis control: refuses power and boot commands

beforeAll(async () => {
  // Fails (never skips) with the apt-get line when ipmi_sim or ipmitool is missing.
  [lab, bare] = await Promise.all([startIpmiSims(3, { password: PASSWORD }), startIpmiSims(1, { password: PASSWORD, chassisControl: false })]);
});

afterAll(async () => {
  await Promise.all([lab?.stop(), bare?.stop()]);
});

function driverFor(bmc: Pick<SimulatedBmc, "address" | "port" | "username">, options: IpmitoolDriverOptions & { password?: string } = {}) {
  return new IpmitoolDriver(
    { driver: "ipmi", address: bmc.address, port: bmc.port, username: bmc.username, password: options.password ?? PASSWORD },
    {
      ...options,
      onExchange: (e) => {
        exchanges.push(e);
        options.onExchange?.(e);
      },
    },
  );
}

async function failure(work: Promise<unknown>): Promise<unknown> {
  try {
    await work;
  } catch (error) {
    errors.push(error);
    return error;
  }
  throw new Error("expected the BMC call to fail");
}

function bmc(i: number): SimulatedBmc {
  return lab.bmcs[i]!;
}

describe("ipmitool driver against ipmi_sim", () => {
  it("reads power status and switches power on and off", async () => {
    const b = bmc(0);
    const driver = driverFor(b);
    expect(await driver.powerStatus()).toBe("off");
    await driver.powerOn();
    expect(await b.power()).toBe("on");
    expect(await driver.powerStatus()).toBe("on");
    await driver.powerOff();
    expect(await b.power()).toBe("off");
    expect(await driver.powerStatus()).toBe("off");
    // A change made behind the BMC's back is what the next read reports.
    await b.setPower("on");
    expect(await driver.powerStatus()).toBe("on");
    await b.setPower("off");
  });

  it("power cycles: the BMC turns the chassis off, then on again by itself", async () => {
    const b = bmc(1);
    const driver = driverFor(b);
    await driver.powerOn();
    const before = Date.now();
    await driver.powerCycle();
    await waitFor("the BMC to power the chassis back on after the cycle", async () => {
      const log = await b.chassisLog();
      return log.some((c) => c.at >= before && c.op === "set" && c.args.join(" ") === "power 1");
    }, 10_000);
    const sets = (await b.chassisLog()).filter((c) => c.at >= before && c.op === "set").map((c) => c.args.join(" "));
    expect(sets).toEqual(["power 0", "power 1"]);
    expect(await b.power()).toBe("on");
    expect(await driver.powerStatus()).toBe("on");
  });

  it("sends reset, soft off and identify to the chassis", async () => {
    const b = bmc(2);
    const driver = driverFor(b);
    const before = Date.now();
    await driver.powerReset();
    await driver.softOff();
    await driver.identify(15);
    await driver.identify(0);
    const sets = (await b.chassisLog()).filter((c) => c.at >= before && c.op === "set").map((c) => c.args.join(" "));
    expect(sets).toEqual(["reset 1", "shutdown 1", "identify 15 0", "identify 0 0"]);
  });

  it("sets a one-time boot device and verifies it with bootparam 5", async () => {
    const b = bmc(0);
    const seen: BmcExchange[] = [];
    const driver = driverFor(b, { onExchange: (e) => seen.push(e) });
    await driver.setBootDevice("pxe");
    expect(await b.bootFlag()).toBe("pxe");
    expect(seen.map((e) => e.command.slice(-3).join(" "))).toEqual(["chassis bootdev pxe", "bootparam get 5"]);
    expect(seen.every((e) => e.operation === "setBootDevice" && e.outcome === "ok" && e.exitCode === 0)).toBe(true);

    await driver.setBootDevice("disk");
    // ipmi_sim hands "disk" (Force Boot from default Hard-Drive) to its chassis program as "default".
    expect(await b.bootFlag()).toBe("default");
  });

  it("refuses a BMC without chassis control with BmcUnsupportedError, also where ipmitool exits 0", async () => {
    const b = bare.bmcs[0]!;
    const seen: BmcExchange[] = [];
    const driver = driverFor(b, { onExchange: (e) => seen.push(e) });
    const power = await failure(driver.powerOn());
    expect(power).toBeInstanceOf(BmcUnsupportedError);
    expect(seen.at(-1)).toMatchObject({ operation: "powerOn", exitCode: 1, outcome: "unsupported" });

    const boot = await failure(driver.setBootDevice("pxe"));
    expect(boot).toBeInstanceOf(BmcUnsupportedError);
    // The lab's gotcha: ipmitool reports the refusal and still exits 0.
    expect(seen.at(-1)).toMatchObject({ operation: "setBootDevice", exitCode: 0, outcome: "unsupported" });
    expect(seen.at(-1)!.stderrSummary).toMatch(/Boot Parameter 5 failed: Invalid data field/);
  });

  it("a wrong password is a BmcAuthError, fast, and never retried blindly", async () => {
    const b = bmc(0);
    const wrong = `${PASSWORD.slice(0, 8)}-not-it`;
    const seen: BmcExchange[] = [];
    const driver = driverFor(b, { password: wrong, onExchange: (e) => seen.push(e) });
    const started = Date.now();
    const error = await failure(driver.powerStatus());
    expect(error).toBeInstanceOf(BmcAuthError);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((error as BmcAuthError).retryable).toBe(false);
    expect((error as BmcAuthError).exchange).toEqual(seen[0]);
    expect(seen[0]).toMatchObject({ outcome: "auth_failed", exitCode: 1 });
    expect(seen[0]!.stderrSummary).toMatch(/RAKP 2 HMAC is invalid/);
    expect(JSON.stringify(seen) + String(error) + (error as Error).stack).not.toContain(wrong);
  });

  it("an unknown user is a BmcAuthError too", async () => {
    const driver = driverFor({ ...bmc(0), username: "nobody" });
    expect(await failure(driver.powerStatus())).toBeInstanceOf(BmcAuthError);
  });

  it("a port where no BMC answers is a BmcUnreachableError within a couple of seconds", async () => {
    const port = await deadUdpPort();
    const driver = driverFor({ address: "127.0.0.1", port, username: "admin" });
    const started = Date.now();
    const error = await failure(driver.powerStatus());
    const took = Date.now() - started;
    expect(error).toBeInstanceOf(BmcUnreachableError);
    expect((error as BmcUnreachableError).retryable).toBe(true);
    expect(took).toBeLessThan(4_000);
    expect((error as BmcUnreachableError).exchange).toMatchObject({ outcome: "unreachable", exitCode: 1 });
  });

  it("the per-call timeout turns a slow answer into BmcUnreachableError", async () => {
    const port = await deadUdpPort();
    // Five retries of 1 s each would take ~6 s; the 400 ms timeout kills ipmitool first.
    const driver = driverFor({ address: "127.0.0.1", port, username: "admin" }, { timeoutMs: 400, retries: 5 });
    const started = Date.now();
    const error = await failure(driver.powerOn());
    expect(error).toBeInstanceOf(BmcUnreachableError);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect((error as BmcUnreachableError).exchange).toMatchObject({ exitCode: null, outcome: "unreachable" });
    expect((error as Error).message).toMatch(/no answer within 400 ms/);
  });

  it("three BMCs at once: each does its own work, in parallel", async () => {
    const seen: BmcExchange[] = [];
    const drivers = lab.bmcs.map((b) => driverFor(b, { onExchange: (e) => seen.push(e) }));
    await Promise.all(drivers.map((d) => d.powerOff()));
    const started = Date.now();
    const results = await Promise.all(
      drivers.map(async (d, i) => {
        if (i === 1) return [await d.powerStatus(), await d.powerStatus()];
        await d.powerOn();
        return [await d.powerStatus(), await d.setBootDevice("pxe").then(() => "pxe")];
      }),
    );
    const took = Date.now() - started;
    expect(results).toEqual([
      ["on", "pxe"],
      ["off", "off"],
      ["on", "pxe"],
    ]);
    expect(await Promise.all(lab.bmcs.map((b) => b.power()))).toEqual(["on", "off", "on"]);
    expect(await Promise.all(lab.bmcs.map((b) => b.bootFlag()))).toEqual(["pxe", expect.any(String), "pxe"]);
    // Parallel, not one after the other: exchanges with different BMCs overlapped in time.
    const recent = seen.filter((e) => Date.parse(e.startedAt) >= started);
    expect(overlappingPairs(recent).some(([a, b]) => a.target !== b.target)).toBe(true);
    const sequential = recent.reduce((sum, e) => sum + e.durationMs, 0);
    expect(took).toBeLessThan(sequential);
  });

  it("one BMC has one session at a time: concurrent calls queue, and the BMC's log shows each inside its own session", async () => {
    const b = bmc(2);
    const seen: BmcExchange[] = [];
    // Two drivers for the same BMC, as two workers' steps in one process would have:
    // without being told anything they share the process-wide lock.
    const one = driverFor(b, { onExchange: (e) => seen.push(e) });
    const two = driverFor(b, { onExchange: (e) => seen.push(e) });
    const before = Date.now();
    await Promise.all([one.powerOn(), two.powerStatus(), one.identify(5), two.powerOff(), one.powerStatus(), two.identify(0)]);

    expect(seen).toHaveLength(6);
    expect(overlappingPairs(seen)).toEqual([]);
    // Call order is kept.
    expect(seen.map((e) => e.operation)).toEqual(["powerOn", "powerStatus", "identify", "powerOff", "powerStatus", "identify"]);
    // Every chassis action of this burst happened inside exactly one exchange's window, in order.
    const calls = (await b.chassisLog()).filter((c) => c.at >= before);
    expect(calls.map((c) => `${c.op} ${c.args.join(" ")}`)).toEqual([
      "set power 1",
      "get power",
      "set identify 5 0",
      "set power 0",
      "get power",
      "set identify 0 0",
    ]);
    const windowOf = (at: number) => seen.findIndex((e) => at >= start(e) - 1 && at <= end(e) + 1);
    expect(calls.map((c) => windowOf(c.at))).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("control: drivers that do not share the lock do overlap (so the check above can fail)", async () => {
    const b = bmc(1);
    const seen: BmcExchange[] = [];
    const drivers = Array.from({ length: 4 }, () => driverFor(b, { sessions: new KeyedMutex(), onExchange: (e) => seen.push(e) }));
    await Promise.all(drivers.map((d) => d.powerStatus()));
    expect(overlappingPairs(seen).length).toBeGreaterThan(0);
  });

  it("argv carries -E, never -P, and the password is in no exchange record or error", () => {
    expect(exchanges.length).toBeGreaterThan(30);
    expect(errors.length).toBeGreaterThanOrEqual(6);
    for (const e of exchanges) {
      expect(e.command).toContain("-E");
      expect(e.command).not.toContain("-P");
      expect(e.command.slice(0, 8)).toEqual(["-I", "lanplus", "-C", "3", "-N", "1", "-R", expect.any(String)]);
    }
    const everything = JSON.stringify(exchanges) + errors.map((e) => `${String(e)} ${(e as Error).stack} ${JSON.stringify(e)}`).join("\n");
    expect(everything).not.toContain(PASSWORD);
    expect(errors.every(isBmcError)).toBe(true);
  });
});

const start = (e: BmcExchange) => Date.parse(e.startedAt);
const end = (e: BmcExchange) => start(e) + e.durationMs;

function overlappingPairs(list: readonly BmcExchange[]): [BmcExchange, BmcExchange][] {
  const pairs: [BmcExchange, BmcExchange][] = [];
  for (let i = 0; i < list.length; i++) {
    for (let j = i + 1; j < list.length; j++) {
      const a = list[i]!;
      const b = list[j]!;
      if (start(a) < end(b) && start(b) < end(a)) pairs.push([a, b]);
    }
  }
  return pairs;
}

/** A UDP port nobody listens on (bound, read, released). */
async function deadUdpPort(): Promise<number> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}
