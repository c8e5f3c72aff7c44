import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isDnsLabel, NameSchema } from "../../../../domain/sentral/names.ts";

/** RFC 1123 label, spelled out without a regex: the oracle the implementation must agree with. */
function oracle(value: string): boolean {
  if (value.length < 1 || value.length > 63) return false;
  const alnum = (c: string) => (c >= "a" && c <= "z") || (c >= "0" && c <= "9");
  for (const c of value) if (!alnum(c) && c !== "-") return false;
  return alnum(value[0]!) && alnum(value[value.length - 1]!);
}

// Ordinary label characters plus the near misses: upper case, '_', '.', space, newline, non-ASCII.
const alphabet = fc.constantFrom(..."abcxyz0189-", "A", "Z", "_", ".", " ", "\n", "é", "ß", "\u0000");

describe("DNS label rule", () => {
  it("accepts exactly the RFC 1123 label set", () => {
    fc.assert(
      fc.property(fc.string({ unit: alphabet, minLength: 0, maxLength: 70 }), (value) => {
        expect(isDnsLabel(value)).toBe(oracle(value));
        expect(NameSchema.safeParse(value).success).toBe(oracle(value));
      }),
      { numRuns: 2000 },
    );
  });

  it("accepts every well-formed label up to 63 characters", () => {
    const inner = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-"), maxLength: 61 });
    const edge = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789");
    const label = fc.oneof(edge, fc.tuple(edge, inner, edge).map(([a, b, c]) => a + b + c));
    fc.assert(fc.property(label, (value) => isDnsLabel(value)));
  });

  it("draws the boundaries where the RFC does", () => {
    expect(isDnsLabel("a")).toBe(true);
    expect(isDnsLabel("0")).toBe(true);
    expect(isDnsLabel("a".repeat(63))).toBe(true);
    expect(isDnsLabel("a".repeat(64))).toBe(false);
    expect(isDnsLabel("")).toBe(false);
    expect(isDnsLabel("a--b")).toBe(true);
    expect(isDnsLabel("-a")).toBe(false);
    expect(isDnsLabel("a-")).toBe(false);
    expect(isDnsLabel("web\n")).toBe(false);
  });
});
