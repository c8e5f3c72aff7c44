import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isVmMac, vmMac } from "../../../../../domain/maskin/vm/mac.ts";

describe("vmMac", () => {
  it("is a stable, locally administered unicast address with the NIC index in the low nibble", () => {
    const mac = vmMac("vm-0192f1a0", 0);
    expect(mac).toBe(vmMac("vm-0192f1a0", 0));
    expect(isVmMac(mac)).toBe(true);
    const first = parseInt(mac.slice(0, 2), 16);
    expect(first & 0x02).toBe(0x02); // locally administered
    expect(first & 0x01).toBe(0); // unicast
    expect(parseInt(mac.slice(-1), 16)).toBe(0);
    expect(parseInt(vmMac("vm-0192f1a0", 3).slice(-1), 16)).toBe(3);
    expect(vmMac("vm-0192f1a0", 3).slice(0, -1)).toBe(mac.slice(0, -1));
  });

  it("pins the derivation (the adapter and stored events depend on it)", () => {
    expect(vmMac("vm-1", 0)).toMatchInlineSnapshot(`"52:13:2b:fd:ce:a0"`);
    expect(vmMac("vm-2", 1)).toMatchInlineSnapshot(`"52:8b:fb:3e:7c:21"`);
  });

  it("refuses an empty id and a NIC index outside 0..15", () => {
    expect(() => vmMac("", 0)).toThrow(RangeError);
    expect(() => vmMac("vm", 16)).toThrow(RangeError);
    expect(() => vmMac("vm", -1)).toThrow(RangeError);
    expect(() => vmMac("vm", 1.5)).toThrow(RangeError);
  });

  it("property: NICs of one VM never share a MAC; different VMs differ (no clash in a sample)", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (id) => {
        const macs = Array.from({ length: 16 }, (_, i) => vmMac(id, i));
        expect(new Set(macs).size).toBe(16);
        for (const m of macs) expect(isVmMac(m)).toBe(true);
      }),
    );
    const ids = Array.from({ length: 5000 }, (_, i) => `vm-${i}`);
    expect(new Set(ids.map((id) => vmMac(id, 0))).size).toBe(ids.length);
  });
});
