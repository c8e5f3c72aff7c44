import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { classifyIpmitoolFailure, dropVerboseNoise, IpmitoolDriver } from "../../../adapters/bmc/ipmitool.ts";
import { BmcCommandError, BmcUnsupportedError, type BmcEndpoint, type BmcExchange } from "../../../adapters/bmc/port.ts";
import { assertIpmiToolsInstalled, IPMI_INSTALL_HINT } from "../../support/ipmi-sim.ts";

/**
 * How the ipmitool driver reads answers that ipmi_sim cannot be made to give:
 * a stand-in `ipmitool` script answers with lines a real BMC has been seen
 * to give (a boot device accepted but not applied, a power state we cannot
 * read). The lines in the classification table are ipmitool 1.8.19's own
 * output against ipmi_sim (see ipmitool.test.ts for the real runs).
 */

let dir: string;
const endpoint = (password: string): BmcEndpoint => ({ driver: "ipmi", address: "192.0.2.10", port: 623, username: "admin", password });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dv-fake-ipmitool-"));
  await writeFile(
    join(dir, "ipmitool"),
    `#!/bin/sh
printf '%s\\n' "$@" > ${dir}/argv
printf '%s' "$IPMI_PASSWORD" > ${dir}/password
case "$*" in
  *"bootdev pxe"*) echo "Set Boot Device to pxe" ;;
  *"bootparam get 5"*) printf 'Boot parameter version: 1\\n - Boot Device Selector : Force Boot from default Hard-Drive\\n' ;;
  *"power status"*) echo "Chassis Power is unknown" ;;
  *"power on"*) echo "Loading IANA PEN Registry..." >&2; echo "Chassis Power Control: Up/On" ;;
esac
`,
  );
  await chmod(join(dir, "ipmitool"), 0o755);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("ipmitool driver: reading answers", () => {
  it("hands the password over in IPMI_PASSWORD and never in argv", async () => {
    const secret = "pa55-w0rd-in-env";
    const seen: BmcExchange[] = [];
    await new IpmitoolDriver(endpoint(secret), { binary: join(dir, "ipmitool"), onExchange: (e) => seen.push(e) }).powerOn();
    expect(await readFile(join(dir, "password"), "utf8")).toBe(secret);
    const argv = (await readFile(join(dir, "argv"), "utf8")).trim().split("\n");
    expect(argv).toEqual(["-I", "lanplus", "-C", "3", "-N", "1", "-R", "1", "-H", "192.0.2.10", "-p", "623", "-U", "admin", "-E", "-v", "chassis", "power", "on"]);
    expect(seen[0]).toMatchObject({ command: argv, outcome: "ok", exitCode: 0, stderrSummary: "" });
  });

  it("takes the cipher suite from the endpoint", async () => {
    await new IpmitoolDriver({ ...endpoint("not-used-here"), cipherSuite: 17 }, { binary: join(dir, "ipmitool") }).powerOn();
    const argv = (await readFile(join(dir, "argv"), "utf8")).trim().split("\n");
    expect(argv.slice(2, 4)).toEqual(["-C", "17"]);
  });

  it("a boot device the BMC accepted but did not apply is BmcUnsupportedError", async () => {
    const seen: BmcExchange[] = [];
    const driver = new IpmitoolDriver(endpoint("not-used-here"), { binary: join(dir, "ipmitool"), onExchange: (e) => seen.push(e) });
    const error = await driver.setBootDevice("pxe").then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BmcUnsupportedError);
    expect(String(error)).toMatch(/accepted bootdev pxe but its boot flags say "Force Boot from default Hard-Drive"/);
    expect(seen.map((e) => e.outcome)).toEqual(["ok", "unsupported"]);
  });

  it("an answer it cannot read is BmcCommandError, not a guess", async () => {
    const driver = new IpmitoolDriver(endpoint("not-used-here"), { binary: join(dir, "ipmitool") });
    await expect(driver.powerStatus()).rejects.toBeInstanceOf(BmcCommandError);
    await expect(driver.powerStatus()).rejects.toThrow(/unexpected answer to power status: Chassis Power is unknown/);
  });

  it("a missing ipmitool binary is BmcCommandError naming it", async () => {
    const driver = new IpmitoolDriver(endpoint("not-used-here"), { binary: join(dir, "no-such-ipmitool") });
    await expect(driver.powerStatus()).rejects.toThrow(/cannot run .*no-such-ipmitool: ENOENT/);
  });

  it("refuses arguments no BMC should get, before any exchange", async () => {
    const seen: BmcExchange[] = [];
    const driver = new IpmitoolDriver(endpoint("not-used-here"), { binary: join(dir, "ipmitool"), onExchange: (e) => seen.push(e) });
    await expect(driver.identify(256)).rejects.toBeInstanceOf(RangeError);
    await expect(driver.identify(1.5)).rejects.toBeInstanceOf(RangeError);
    await expect(driver.setBootDevice("pxe", { persistent: true as false })).rejects.toBeInstanceOf(RangeError);
    expect(seen).toEqual([]);
    expect(() => new IpmitoolDriver({ ...endpoint("not-used-here"), driver: "redfish" })).toThrow(TypeError);
  });
});

describe("ipmitool failure classification", () => {
  it.each([
    ["> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session", "auth_failed"], // wrong password
    ["RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2 / RMCP+ session", "auth_failed"], // unknown user
    ["Error in open session response message : invalid authentication algorithm\n\nError: Unable to establish IPMI v2 / RMCP+ session", "auth_failed"], // cipher 17
    ["Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session", "unreachable"], // dead port
    ["Error: Unable to establish IPMI v2 / RMCP+ session", "unreachable"],
    ["Set Chassis Power Control to Up/On failed: Invalid data field in request", "unsupported"],
    ["Set Chassis Boot Parameter 5 failed: Invalid data field in request", "unsupported"],
    ["Set Chassis Power Control to Up/On failed: Node busy", "failed"],
  ])("%j is %s", (stderr, kind) => {
    expect(classifyIpmitoolFailure(stderr)).toBe(kind);
  });

  it("drops -v's noise but keeps real errors", () => {
    const stderr = [
      "Loading IANA PEN Registry...",
      "Running Get VSO Capabilities my_addr 0x20, transit 0, target 0x20",
      "Invalid completion code received: Invalid command",
      "Discovered IPMB address 0x0",
      "Invalid completion code received: Invalid command",
      "Set Chassis Identify failed: Invalid data field in request",
    ].join("\n");
    expect(dropVerboseNoise(stderr).split("\n")).toEqual([
      "Invalid completion code received: Invalid command",
      "Set Chassis Identify failed: Invalid data field in request",
    ]);
  });
});

describe("the ipmi_sim test helper", () => {
  it("fails with the apt-get line when ipmi_sim or ipmitool is missing", async () => {
    const path = process.env.PATH;
    process.env.PATH = dir.replace(/\/[^/]*$/, "/dv-no-such-dir");
    try {
      expect(() => assertIpmiToolsInstalled()).toThrow(IPMI_INSTALL_HINT);
      expect(IPMI_INSTALL_HINT).toBe("apt-get install --no-install-recommends openipmi ipmitool");
    } finally {
      process.env.PATH = path;
    }
    expect(() => assertIpmiToolsInstalled()).not.toThrow();
  });
});
