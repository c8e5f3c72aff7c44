import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  BmcAuthError,
  BmcUnreachableError,
  BmcUnsupportedError,
  isBmcError,
  type BmcExchange,
} from "../../../adapters/bmc/port.ts";
import { RedfishDriver, type RedfishDriverOptions } from "../../../adapters/bmc/redfish.ts";
import { KeyedMutex } from "../../../adapters/bmc/serial.ts";

/**
 * The Redfish driver against a small Redfish service written here with
 * node:http. It is the only Redfish peer available: Debian 12 packages no
 * Redfish BMC emulator (sushy-tools is not packaged, python3-sushy is only a
 * client; see ../shared/lab/NOTES.md). The service implements exactly what
 * the driver uses, as DSP0266 describes it: the Systems collection, a
 * ComputerSystem with PowerState, Boot (with AllowableValues), indicator
 * properties and ETag, the ComputerSystem.Reset action, basic authentication
 * with 401, and Redfish error bodies.
 */

const PASSWORD = randomBytes(12).toString("base64url");

interface FakeOptions {
  resetTypes?: string[];
  indicator?: "location" | "led" | "none";
  /** Answers 204 to a Boot PATCH but keeps the old override (a BMC that silently ignores it). */
  ignoreBootPatch?: boolean;
  /** Never answers. */
  hang?: boolean;
  delayMs?: number;
}

interface FakeRedfish {
  url: URL;
  port: number;
  system: Record<string, unknown>;
  requests: { method: string; path: string; body: unknown; ifMatch: string | undefined; at: number }[];
  maxInFlight: number;
  close(): Promise<void>;
}

const servers: FakeRedfish[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function fakeRedfish(options: FakeOptions = {}): Promise<FakeRedfish> {
  const systemPath = "/redfish/v1/Systems/437XR1138R2";
  const resetTypes = options.resetTypes ?? ["On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle", "Nmi"];
  let version = 1;
  const system: Record<string, unknown> = {
    "@odata.id": systemPath,
    "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
    Id: "437XR1138R2",
    PowerState: "Off",
    Boot: {
      BootSourceOverrideEnabled: "Disabled",
      BootSourceOverrideTarget: "None",
      "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd", "Cd", "BiosSetup"],
    },
    Actions: {
      "#ComputerSystem.Reset": {
        target: `${systemPath}/Actions/ComputerSystem.Reset`,
        "ResetType@Redfish.AllowableValues": resetTypes,
      },
    },
  };
  if ((options.indicator ?? "location") === "location") system.LocationIndicatorActive = false;
  if (options.indicator === "led") system.IndicatorLED = "Off";

  const requests: FakeRedfish["requests"] = [];
  let inFlight = 0;
  const fake = { system, requests, maxInFlight: 0 } as FakeRedfish;
  const error = (res: ServerResponse, status: number, messageId: string, message: string) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: `Base.1.16.${messageId}`, message, "@Message.ExtendedInfo": [{ MessageId: `Base.1.16.${messageId}`, Message: message }] } }));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
    const path = new URL(req.url ?? "/", "http://x").pathname;
    requests.push({ method: req.method ?? "", path, body, ifMatch: req.headers["if-match"], at: Date.now() });
    if (options.hang) return; // never answers
    if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));

    const expected = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString("base64")}`;
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="Redfish"', "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "Base.1.16.InsufficientPrivilege", message: "Authentication failed" } }));
      return;
    }
    const etag = `W/"${version}"`;
    if (req.method === "GET" && path === "/redfish/v1/Systems") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ "@odata.id": "/redfish/v1/Systems", "Members@odata.count": 1, Members: [{ "@odata.id": systemPath }] }));
    } else if (req.method === "GET" && path === systemPath) {
      res.writeHead(200, { "content-type": "application/json", etag });
      res.end(JSON.stringify(system));
    } else if (req.method === "PATCH" && path === systemPath) {
      if (req.headers["if-match"] !== undefined && req.headers["if-match"] !== etag) return error(res, 412, "PreconditionFailed", "ETag does not match");
      for (const [key, value] of Object.entries(body ?? {})) {
        if (!(key in system)) return error(res, 400, "PropertyUnknown", `The property ${key} is not in the list of valid properties for the resource.`);
        if (key === "Boot" && !options.ignoreBootPatch) Object.assign(system.Boot as object, value);
        if (key !== "Boot") system[key] = value;
      }
      version++;
      res.writeHead(204).end();
    } else if (req.method === "POST" && path === `${systemPath}/Actions/ComputerSystem.Reset`) {
      const type = String(body?.ResetType);
      if (!resetTypes.includes(type)) return error(res, 400, "ActionParameterValueNotInList", `The value ${type} for the parameter ResetType is not in the list of acceptable values.`);
      if (type === "ForceOff" || type === "GracefulShutdown") system.PowerState = "Off";
      if (type === "On" || type === "PowerCycle" || type === "ForceRestart") system.PowerState = "On";
      version++;
      res.writeHead(204).end();
    } else {
      error(res, 404, "ResourceNotFound", `No resource at ${path}`);
    }
  };

  const server: Server = createServer((req, res) => {
    inFlight++;
    fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
    res.on("close", () => inFlight--);
    handle(req, res).catch((e: unknown) => {
      res.writeHead(500).end(String(e));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.port = (server.address() as AddressInfo).port;
  fake.url = new URL(`http://127.0.0.1:${fake.port}`);
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  servers.push(fake);
  return fake;
}

const exchanges: BmcExchange[] = [];
const errors: unknown[] = [];

function driverFor(fake: { port: number }, options: RedfishDriverOptions & { password?: string } = {}) {
  return new RedfishDriver(
    { driver: "redfish", scheme: "http", address: "127.0.0.1", port: fake.port, username: "admin", password: options.password ?? PASSWORD },
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

describe("Redfish driver", () => {
  it("reads PowerState and resets with the matching ResetType", async () => {
    const bmc = await fakeRedfish();
    const driver = driverFor(bmc);
    expect(await driver.powerStatus()).toBe("off");
    await driver.powerOn();
    expect(await driver.powerStatus()).toBe("on");
    await driver.powerReset();
    await driver.powerCycle();
    await driver.softOff();
    expect(await driver.powerStatus()).toBe("off");
    await driver.powerOn();
    await driver.powerOff();
    const resets = bmc.requests.filter((r) => r.method === "POST").map((r) => r.body);
    expect(resets).toEqual(["On", "ForceRestart", "PowerCycle", "GracefulShutdown", "On", "ForceOff"].map((ResetType) => ({ ResetType })));
    // The collection is read once; the system every time.
    expect(bmc.requests.filter((r) => r.path === "/redfish/v1/Systems")).toHaveLength(1);
  });

  it("maps transitional power states to on", async () => {
    const bmc = await fakeRedfish();
    const driver = driverFor(bmc);
    bmc.system.PowerState = "PoweringOff";
    expect(await driver.powerStatus()).toBe("on");
    bmc.system.PowerState = "Sleeping?";
    expect(await failure(driver.powerStatus())).toMatchObject({ code: "bmc_command_failed" });
  });

  it("sets a one-time boot override with If-Match and reads it back", async () => {
    const bmc = await fakeRedfish();
    const seen: BmcExchange[] = [];
    const driver = driverFor(bmc, { onExchange: (e) => seen.push(e) });
    await driver.setBootDevice("pxe");
    expect(bmc.system.Boot).toMatchObject({ BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Once" });
    const patch = bmc.requests.find((r) => r.method === "PATCH")!;
    expect(patch.body).toEqual({ Boot: { BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Once" } });
    expect(patch.ifMatch).toBe('W/"1"');
    expect(seen.map((e) => e.command[0])).toEqual(["GET", "GET", "PATCH", "GET"]);
    await driver.setBootDevice("disk");
    expect(bmc.system.Boot).toMatchObject({ BootSourceOverrideTarget: "Hdd", BootSourceOverrideEnabled: "Once" });
  });

  it("a boot override the BMC ignores is BmcUnsupportedError", async () => {
    const bmc = await fakeRedfish({ ignoreBootPatch: true });
    const error = await failure(driverFor(bmc).setBootDevice("pxe"));
    expect(error).toBeInstanceOf(BmcUnsupportedError);
    expect(String(error)).toMatch(/reports None\/Disabled/);
  });

  it("a ResetType the system does not advertise is BmcUnsupportedError, and nothing is posted", async () => {
    const bmc = await fakeRedfish({ resetTypes: ["On", "ForceOff", "GracefulShutdown", "ForceRestart"] });
    const error = await failure(driverFor(bmc).powerCycle());
    expect(error).toBeInstanceOf(BmcUnsupportedError);
    expect(bmc.requests.some((r) => r.method === "POST")).toBe(false);
  });

  it("identify uses LocationIndicatorActive, or IndicatorLED on older services, or says unsupported", async () => {
    const modern = await fakeRedfish({ indicator: "location" });
    await driverFor(modern).identify(30);
    expect(modern.system.LocationIndicatorActive).toBe(true);
    await driverFor(modern).identify(0);
    expect(modern.system.LocationIndicatorActive).toBe(false);

    const older = await fakeRedfish({ indicator: "led" });
    await driverFor(older).identify(30);
    expect(older.system.IndicatorLED).toBe("Blinking");

    const none = await fakeRedfish({ indicator: "none" });
    expect(await failure(driverFor(none).identify(30))).toBeInstanceOf(BmcUnsupportedError);
  });

  it("a wrong password is BmcAuthError (401)", async () => {
    const bmc = await fakeRedfish();
    const wrong = `${PASSWORD}x`;
    const seen: BmcExchange[] = [];
    const error = await failure(driverFor(bmc, { password: wrong, onExchange: (e) => seen.push(e) }).powerStatus());
    expect(error).toBeInstanceOf(BmcAuthError);
    expect(seen[0]).toMatchObject({ exitCode: 401, outcome: "auth_failed" });
    expect(JSON.stringify(seen) + String(error) + (error as Error).stack).not.toContain(wrong);
  });

  it("no answer within the timeout, or no listener, is BmcUnreachableError", async () => {
    const silent = await fakeRedfish({ hang: true });
    const started = Date.now();
    const error = await failure(driverFor(silent, { timeoutMs: 300 }).powerStatus());
    expect(error).toBeInstanceOf(BmcUnreachableError);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect((error as BmcUnreachableError).exchange).toMatchObject({ exitCode: null, outcome: "unreachable" });

    const gone = await fakeRedfish();
    await gone.close();
    const refused = await failure(driverFor(gone).powerOn());
    expect(refused).toBeInstanceOf(BmcUnreachableError);
    expect(String(refused)).toMatch(/ECONNREFUSED/);
  });

  it("one request at a time per BMC, BMCs in parallel", async () => {
    const [a, b] = await Promise.all([fakeRedfish({ delayMs: 30 }), fakeRedfish({ delayMs: 30 })]);
    const lock = new KeyedMutex();
    const onA = [driverFor(a, { sessions: lock }), driverFor(a, { sessions: lock })];
    const onB = driverFor(b, { sessions: lock });
    await Promise.all([onA[0]!.powerOn(), onA[1]!.powerStatus(), onA[0]!.identify(5), onB.powerOn(), onB.powerStatus()]);
    expect(a.maxInFlight).toBe(1);
    expect(b.maxInFlight).toBe(1);
    // A and B were served at the same time: the first request to B came before A's last.
    expect(b.requests[0]!.at).toBeLessThan(a.requests.at(-1)!.at);

    // Control: without a shared lock the same burst does overlap on A.
    const c = await fakeRedfish({ delayMs: 30 });
    await Promise.all([driverFor(c, { sessions: new KeyedMutex() }).powerOn(), driverFor(c, { sessions: new KeyedMutex() }).powerStatus()]);
    expect(c.maxInFlight).toBeGreaterThan(1);
  });

  it("the password is in no exchange record or error; the Authorization header is not recorded", () => {
    expect(exchanges.length).toBeGreaterThan(20);
    expect(errors.length).toBeGreaterThanOrEqual(7);
    const basic = Buffer.from(`admin:${PASSWORD}`).toString("base64");
    const everything = JSON.stringify(exchanges) + errors.map((e) => `${String(e)} ${(e as Error).stack} ${JSON.stringify(e)}`).join("\n");
    expect(everything).not.toContain(PASSWORD);
    expect(everything).not.toContain(basic);
    expect(errors.every(isBmcError)).toBe(true);
  });
});
