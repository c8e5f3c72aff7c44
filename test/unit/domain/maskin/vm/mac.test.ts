import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { vmMac as adapterVmMac } from "../../../../../adapters/qemu/port.ts";
import { isVmMac, sha256, vmMac } from "../../../../../domain/maskin/vm/mac.ts";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe("vmMac", () => {
  it("is a stable, locally administered unicast address with the NIC index as the last octet", () => {
    const mac = vmMac("vm-0192f1a0", 0);
    expect(mac).toBe(vmMac("vm-0192f1a0", 0));
    expect(isVmMac(mac)).toBe(true);
    const first = parseInt(mac.slice(0, 2), 16);
    expect(first & 0x02).toBe(0x02); // locally administered
    expect(first & 0x01).toBe(0); // unicast
    expect(mac.endsWith(":00")).toBe(true);
    expect(vmMac("vm-0192f1a0", 17).endsWith(":11")).toBe(true);
    expect(vmMac("vm-0192f1a0", 3).slice(0, 14)).toBe(mac.slice(0, 14));
  });

  it("pins the derivation (stored events and the QEMU adapter depend on it)", () => {
    expect(vmMac("vm-1", 0)).toMatchInlineSnapshot(`"46:b6:ba:f4:9c:00"`);
    expect(vmMac("vm-2", 1)).toMatchInlineSnapshot(`"fa:6e:47:4a:f1:01"`);
  });

  it("refuses an empty id and a NIC index outside 0..255", () => {
    expect(() => vmMac("", 0)).toThrow(RangeError);
    expect(() => vmMac("vm", 256)).toThrow(RangeError);
    expect(() => vmMac("vm", -1)).toThrow(RangeError);
    expect(() => vmMac("vm", 1.5)).toThrow(RangeError);
  });

  it("property: the pure SHA-256 equals node:crypto's (empty, block boundaries, unicode)", () => {
    for (const s of ["", "abc", "a".repeat(55), "a".repeat(56), "a".repeat(64), "a".repeat(119)]) {
      expect(hex(sha256(new TextEncoder().encode(s)))).toBe(createHash("sha256").update(s).digest("hex"));
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(hex(sha256(bytes))).toBe(createHash("sha256").update(bytes).digest("hex"));
      }),
    );
  });

  it("property: the QEMU adapter uses the domain's derivation; NICs of one VM never share one", () => {
    expect(adapterVmMac).toBe(vmMac);
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (id) => {
        const macs = Array.from({ length: 16 }, (_, i) => vmMac(id, i));
        expect(new Set(macs).size).toBe(16);
        for (const m of macs) expect(isVmMac(m)).toBe(true);
      }),
    );
  });
});
