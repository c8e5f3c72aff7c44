import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  datacenterDecider,
  macRegistryDecider,
  normalizeMac,
  RegisterHostSchema,
  type DatacenterEvent,
  type RegisterHostInput,
} from "../../../../domain/inventory/index.ts";
import { fold } from "../../../../domain/shared/decider.ts";
import { DomainError } from "../../../../domain/shared/errors.ts";
import { deciderSpec } from "../../support/decider-spec.ts";

const spec = deciderSpec(datacenterDecider);
const dcRegistered: DatacenterEvent = { type: "DatacenterRegistered", data: { datacenter: "osl1", displayName: null, region: null } };
const rackRegistered: DatacenterEvent = { type: "RackRegistered", data: { datacenter: "osl1", rack: "r01", room: null } };

const host = (over: Partial<RegisterHostInput> = {}) =>
  RegisterHostSchema.parse({
    type: "RegisterHost",
    datacenter: "osl1",
    hostId: "h-1",
    name: "node-01",
    rack: "r01",
    serial: "SN123",
    macs: ["52:54:00:12:34:01"],
    bmc: { driver: "ipmi", address: "127.0.0.1", port: 9623, username: "admin", credentialRef: "secret:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" },
    changeId: "c-1",
    ...over,
  });

const hostRegistered: DatacenterEvent = {
  type: "HostRegistered",
  data: {
    datacenter: "osl1", hostId: "h-1", name: "node-01", rack: "r01", position: null, vendor: null, model: null, role: "bare-metal",
    bmc: { driver: "ipmi", port: 9623, username: "admin", credentialRef: "secret:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" },
    serial: "SN123", macs: ["52:54:00:12:34:01"], bmcAddress: "127.0.0.1",
  },
};
const base: DatacenterEvent[] = [dcRegistered, rackRegistered, hostRegistered];

describe("MACs", () => {
  it("normalizes every usual spelling to lowercase colon form and refuses the rest", () => {
    for (const raw of ["52:54:00:AB:cd:01", "52-54-00-ab-CD-01", "5254.00ab.cd01", "525400ABCD01"]) expect(normalizeMac(raw)).toBe("52:54:00:ab:cd:01");
    for (const raw of ["52:54:00:ab:cd", "52:54-00:ab:cd:01", "zz:54:00:ab:cd:01", "01:00:5e:00:00:01", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"]) {
      expect(normalizeMac(raw), raw).toBeUndefined();
    }
  });
});

describe("datacenter, racks", () => {
  it("registers a datacenter once; the same again is nothing, a change is an update", () => {
    spec.given([]).when({ type: "RegisterDatacenter", datacenter: "osl1" }).then([dcRegistered]);
    spec.given([dcRegistered]).when({ type: "RegisterDatacenter", datacenter: "osl1", displayName: null }).thenNothing();
    spec.given([dcRegistered]).when({ type: "RegisterDatacenter", datacenter: "osl1", region: "oslo" }).then([
      { type: "DatacenterUpdated", data: { datacenter: "osl1", displayName: null, region: "oslo" } },
    ]);
    spec.given([]).when({ type: "RegisterDatacenter", datacenter: "Oslo 1" }).thenFails("invalid_name");
  });

  it("racks need their datacenter; a room change is an update", () => {
    spec.given([]).when({ type: "RegisterRack", datacenter: "osl1", rack: "r01" }).thenFails("datacenter_not_found");
    spec.given([dcRegistered]).when({ type: "RegisterRack", datacenter: "osl1", rack: "r01" }).then([rackRegistered]);
    spec.given([dcRegistered, rackRegistered]).when({ type: "RegisterRack", datacenter: "osl1", rack: "r01", room: null }).thenNothing();
    spec.given([dcRegistered, rackRegistered]).when({ type: "RegisterRack", datacenter: "osl1", rack: "r01", room: "hall-a" }).then([
      { type: "RackUpdated", data: { datacenter: "osl1", rack: "r01", room: "hall-a" } },
    ]);
  });
});

describe("hosts", () => {
  it("registers a host with normalized MACs, the default role and the default BMC port", () => {
    const { events } = spec.given([dcRegistered, rackRegistered]).when(host({ macs: ["52-54-00-12-34-01"] })).then([hostRegistered]);
    expect(events).toHaveLength(1);
    const withoutPort = spec.given([dcRegistered, rackRegistered]).when(host({ bmc: { driver: "redfish", address: "10.0.0.9", username: "root" } }));
    const [event] = withoutPort.then([
      { ...hostRegistered, data: { ...hostRegistered.data, bmc: { driver: "redfish", port: 443, username: "root", credentialRef: null }, bmcAddress: "10.0.0.9" } } as DatacenterEvent,
    ]).events;
    expect(event?.type).toBe("HostRegistered");
  });

  it("the same registration again decides nothing (importing twice changes nothing)", () => {
    spec.given(base).when(host({ changeId: "another" })).thenNothing();
  });

  it("refuses an unknown rack, a taken name, serial or MAC", () => {
    spec.given([dcRegistered]).when(host()).thenFails("rack_not_found");
    spec.given(base).when(host({ hostId: "h-2" })).thenFails("host_name_taken", { hostId: "h-1" });
    spec.given(base).when(host({ hostId: "h-2", name: "node-02", macs: ["52:54:00:12:34:02"] })).thenFails("serial_taken", { host: "node-01" });
    spec.given(base).when(host({ hostId: "h-2", name: "node-02", serial: "SN2", macs: ["52:54:00:12:34:01"] })).thenFails("mac_in_use", { mac: "52:54:00:12:34:01" });
    spec.given(base).when(host({ macs: ["52:54:00:12:34:01", "52:54:00:12:34:01"] })).thenFails("duplicate_mac");
  });

  it("attribute changes apply at once and name what changed, never a value of the credential", () => {
    spec.given(base).when(host({ role: "hypervisor", bmc: { driver: "ipmi", address: "127.0.0.1", port: 9623, username: "admin", credentialRef: "secret:0193a1b2-c3d4-7e5f-8a9b-000000000002" } })).then([
      {
        type: "HostUpdated",
        data: {
          datacenter: "osl1", hostId: "h-1", rack: "r01", position: null, vendor: null, model: null, role: "hypervisor",
          bmc: { driver: "ipmi", port: 9623, username: "admin", credentialRef: "secret:0193a1b2-c3d4-7e5f-8a9b-000000000002" },
          changed: ["role", "bmc.credential"],
        },
      },
    ]);
  });

  it("an identity change of a trusted host is only proposed; the same proposal again is nothing; going back withdraws it", () => {
    const proposed: DatacenterEvent = {
      type: "HostIdentityChangeProposed",
      data: {
        datacenter: "osl1", hostId: "h-1", changeId: "c-1",
        proposed: { serial: "SN999", macs: ["52:54:00:12:34:01"], bmcAddress: "127.0.0.1" },
        current: { serial: "SN123", macs: ["52:54:00:12:34:01"], bmcAddress: "127.0.0.1" },
      },
    };
    const { state } = spec.given(base).when(host({ serial: "SN999" })).then([proposed]);
    if (state.status !== "present") throw new Error("absent");
    expect(state.hosts.get("h-1")?.serial).toBe("SN123"); // not in effect
    spec.given([...base, proposed]).when(host({ serial: "SN999", changeId: "c-2" })).thenNothing();
    spec.given([...base, proposed]).when(host()).then([{ type: "HostIdentityChangeWithdrawn", data: { datacenter: "osl1", hostId: "h-1", changeId: "c-1" } }]);
    // MACs and BMC address are identity too.
    expect(fold(datacenterDecider, base) && datacenterDecider.decide(host({ macs: ["52:54:00:12:34:09"] }), fold(datacenterDecider, base))).toMatchObject([{ type: "HostIdentityChangeProposed" }]);
    expect(datacenterDecider.decide(host({ bmc: { driver: "ipmi", address: "10.9.9.9", port: 9623, username: "admin", credentialRef: "secret:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" } }), fold(datacenterDecider, base))).toMatchObject([
      { type: "HostIdentityChangeProposed", data: { proposed: { bmcAddress: "10.9.9.9" } } },
    ]);
  });

  it("approval applies the pending identity; approving it again is nothing; a stale or absent change is refused", () => {
    const history = [...base];
    const proposed = datacenterDecider.decide(host({ serial: "SN999" }), fold(datacenterDecider, history));
    if (proposed instanceof DomainError) throw proposed;
    history.push(...proposed);
    spec.given(history).when({ type: "ApproveHostIdentityChange", datacenter: "osl1", hostId: "h-1", changeId: "other" }).thenFails("identity_change_superseded");
    const { state, events } = spec.given(history).when({ type: "ApproveHostIdentityChange", datacenter: "osl1", hostId: "h-1", changeId: "c-1" }).then([
      { type: "HostIdentityChangeApproved", data: { datacenter: "osl1", hostId: "h-1", changeId: "c-1", identity: { serial: "SN999", macs: ["52:54:00:12:34:01"], bmcAddress: "127.0.0.1" } } },
    ]);
    if (state.status !== "present") throw new Error("absent");
    expect(state.hosts.get("h-1")).toMatchObject({ serial: "SN999", pending: null });
    spec.given([...history, ...events]).when({ type: "ApproveHostIdentityChange", datacenter: "osl1", hostId: "h-1", changeId: "c-1" }).thenNothing();
    spec.given(base).when({ type: "ApproveHostIdentityChange", datacenter: "osl1", hostId: "h-1" }).thenFails("identity_change_not_found");
    spec.given(base).when({ type: "ApproveHostIdentityChange", datacenter: "osl1", hostId: "nope" }).thenFails("host_not_found");
  });

  it("a pending identity holds its serial and MACs: no other host may take them meanwhile", () => {
    const proposed = datacenterDecider.decide(host({ serial: "SN999", macs: ["52:54:00:12:34:09"] }), fold(datacenterDecider, base));
    if (proposed instanceof DomainError) throw proposed;
    const history = [...base, ...proposed];
    spec.given(history).when(host({ hostId: "h-2", name: "node-02", serial: "SN999", macs: ["52:54:00:12:34:02"] })).thenFails("serial_taken");
    spec.given(history).when(host({ hostId: "h-2", name: "node-02", serial: "SN2", macs: ["52:54:00:12:34:09"] })).thenFails("mac_in_use");
  });
});

describe("switches and links", () => {
  const sw: DatacenterEvent = { type: "SwitchRegistered", data: { datacenter: "osl1", switch: "tor-1", rack: "r01", position: 42, vendor: null, model: null, managementAddress: null } };
  it("links connect known devices, in a canonical order, one cable per port", () => {
    spec.given([...base]).when({ type: "RegisterLink", datacenter: "osl1", a: { device: "node-01", port: "eth0" }, b: { device: "tor-1", port: "1" } }).thenFails("device_not_found");
    const link = { type: "RegisterLink" as const, datacenter: "osl1", a: { device: "tor-1", port: "1" }, b: { device: "node-01", port: "eth0" } };
    const { events } = spec.given([...base, sw]).when(link).then([
      { type: "LinkRegistered", data: { datacenter: "osl1", a: { device: "node-01", port: "eth0" }, b: { device: "tor-1", port: "1" } } },
    ]);
    spec.given([...base, sw, ...events]).when({ ...link, a: link.b, b: link.a }).thenNothing();
    spec.given([...base, sw, ...events]).when({ ...link, b: { device: "node-01", port: "eth1" } }).thenFails("port_in_use");
  });
});

describe("MAC registry", () => {
  const reserve = (hostId: string, macs: string[], datacenter = "osl1") => ({ type: "ReserveHostMacs" as const, hostId, datacenter, macs });
  it("a MAC belongs to one host platform-wide; re-reserving the same set is nothing; a new set releases the old", () => {
    const first = macRegistryDecider.decide(reserve("h-1", ["52:54:00:00:00:02", "52:54:00:00:00:01"]), macRegistryDecider.initialState);
    expect(first).toEqual([{ type: "HostMacsReserved", data: { hostId: "h-1", datacenter: "osl1", macs: ["52:54:00:00:00:01", "52:54:00:00:00:02"] } }]);
    if (first instanceof DomainError) throw first;
    const state = fold(macRegistryDecider, first);
    expect(macRegistryDecider.decide(reserve("h-1", ["52:54:00:00:00:01", "52:54:00:00:00:02"]), state)).toEqual([]);
    expect(macRegistryDecider.decide(reserve("h-9", ["52:54:00:00:00:02"], "bgo1"), state)).toMatchObject({ code: "mac_in_use" });
    const moved = macRegistryDecider.decide(reserve("h-1", ["52:54:00:00:00:01"]), state);
    if (moved instanceof DomainError) throw moved;
    expect(macRegistryDecider.decide(reserve("h-9", ["52:54:00:00:00:02"], "bgo1"), fold(macRegistryDecider, [...first, ...moved]))).toHaveLength(1);
  });
});

describe("properties", () => {
  const mac = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }).map((bytes) => {
    bytes[0] = bytes[0]! & 0xfe | 0x02; // unicast, locally administered: never all zero
    return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
  });
  const hostArb = fc.record({
    name: fc.constantFrom("node-01", "node-02", "node-03"),
    serial: fc.constantFrom("SN1", "SN2", "SN3", "SN4"),
    macs: fc.uniqueArray(mac, { minLength: 1, maxLength: 3 }),
    role: fc.constantFrom("bare-metal" as const, "hypervisor" as const),
    address: fc.constantFrom("10.0.0.1", "10.0.0.2"),
  });

  it("any sequence of registrations: deciding the last one again decides nothing, and no two hosts ever share a serial or a MAC", () => {
    fc.assert(
      fc.property(fc.array(hostArb, { maxLength: 12 }), (hosts) => {
        const history: DatacenterEvent[] = [dcRegistered, rackRegistered];
        let state = fold(datacenterDecider, history);
        for (const [i, h] of hosts.entries()) {
          const existing = state.status === "present" ? [...state.hosts.values()].find((x) => x.name === h.name) : undefined;
          const command = host({
            hostId: existing?.hostId ?? `h-${i}`, name: h.name, serial: h.serial, macs: h.macs, role: h.role, changeId: `c-${i}`,
            bmc: { driver: "ipmi", address: h.address, username: "admin" },
          });
          const decided = datacenterDecider.decide(command, state);
          if (decided instanceof DomainError) continue;
          for (const e of decided) state = datacenterDecider.evolve(state, e);
          // Idempotence: the same description again changes nothing.
          expect(datacenterDecider.decide({ ...command, changeId: "again" }, state)).toEqual([]);
        }
        if (state.status !== "present") throw new Error("absent");
        const serials = new Set<string>();
        const macs = new Set<string>();
        for (const h of state.hosts.values()) {
          for (const identity of h.pending ? [h, h.pending.identity] : [h]) {
            if (identity !== h && identity.serial === h.serial) continue;
            expect(serials.has(identity.serial)).toBe(false);
            serials.add(identity.serial);
            for (const m of identity.macs) {
              if (identity !== h && h.macs.includes(m)) continue;
              expect(macs.has(m)).toBe(false);
              macs.add(m);
            }
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
