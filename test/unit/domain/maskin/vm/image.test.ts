import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { imageDecider, imageEvent, ImageCommandSchema, type ImageCommandInput } from "../../../../../domain/maskin/vm/image.ts";
import { imageStreamId } from "../../../../../domain/maskin/vm/stream.ts";
import { deciderSpec } from "../../../support/decider-spec.ts";

const spec = deciderSpec(imageDecider);
const at = "2026-12-01T10:00:00.000Z";
const d1 = "a".repeat(64);
const d2 = "b".repeat(64);
const content = { digest: d1, format: "qcow2" as const, source: { kind: "url" as const, url: "https://images.example/debian-12.qcow2" }, osFamily: "debian", guestInit: "cloud-init" as const };
const register = (version: string, c: Record<string, unknown> = content) => ImageCommandSchema.parse({ type: "RegisterImageVersion", name: "debian", version, content: c, at } as ImageCommandInput);
const registered = (version: string) => imageEvent("ImageVersionRegistered", { name: "debian", version, content: { ...content, boot: null }, at });

describe("Image decider", () => {
  it("registers a version; the same content again (any key order) is a no-op", () => {
    expect(imageStreamId("debian")).toBe("maskin-image-debian");
    spec.given([]).when(register("12.1")).then([registered("12.1")]);
    const reordered = { guestInit: "cloud-init", osFamily: "debian", source: content.source, format: "qcow2", digest: d1 };
    spec.given([registered("12.1")]).when(register("12.1", reordered)).thenNothing();
  });

  it("refuses other content under an existing version (image_version_immutable); new content is a new version", () => {
    spec.given([registered("12.1")]).when(register("12.1", { ...content, digest: d2 })).thenFails("image_version_immutable", { version: "12.1", fields: ["digest"], digest: d1 });
    spec.given([registered("12.1")]).when(register("12.1", { ...content, guestInit: "none" })).thenFails("image_version_immutable", { fields: ["guestInit"] });
    const { state } = spec.given([registered("12.1")]).when(register("12.2", { ...content, digest: d2 })).then([
      imageEvent("ImageVersionRegistered", { name: "debian", version: "12.2", content: { ...content, digest: d2, boot: null }, at }),
    ]);
    expect([...state.versions.keys()]).toEqual(["12.1", "12.2"]);
  });

  it("kernel+initrd needs both parts (and only that format has them); sources are https URLs or absolute files", () => {
    const boot = { kernel: { source: { kind: "file", path: "/srv/img/vmlinuz" }, digest: d1 }, initrd: { source: { kind: "file", path: "/srv/img/initrd.img" }, digest: d2 } };
    const ok = register("k1", { ...content, format: "kernel+initrd", source: { kind: "file", path: "/srv/img" }, guestInit: "none", boot });
    expect(ok.content.boot?.cmdline).toBe("");
    expect(() => register("k1", { ...content, format: "kernel+initrd" })).toThrow();
    expect(() => register("q1", { ...content, boot })).toThrow();
    expect(() => register("q1", { ...content, source: { kind: "file", path: "relative.qcow2" } })).toThrow();
    expect(() => register("q1", { ...content, digest: "ABC" })).toThrow();
  });

  it("property: a registered version's content never changes, whatever is registered after", () => {
    const contentArb = fc.record({ digest: fc.constantFrom(d1, d2), format: fc.constantFrom("qcow2" as const, "raw" as const), source: fc.constant(content.source), osFamily: fc.constantFrom("debian", "talos"), guestInit: fc.constantFrom("cloud-init" as const, "none" as const) });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom("1", "2", "3"), contentArb), { maxLength: 20 }), (registrations) => {
        let state = imageDecider.initialState;
        const first = new Map<string, string>();
        for (const [version, c] of registrations) {
          const out = imageDecider.decide(register(version, c), state);
          if (!first.has(version)) first.set(version, JSON.stringify({ ...c, boot: null }));
          if (!Array.isArray(out)) expect(out).toMatchObject({ code: "image_version_immutable" });
          else for (const e of out) state = imageDecider.evolve(state, e);
          for (const [v, json] of first) {
            const s = state.versions.get(v)!.content;
            expect(JSON.stringify({ digest: s.digest, format: s.format, source: s.source, osFamily: s.osFamily, guestInit: s.guestInit, boot: s.boot })).toBe(json);
          }
        }
      }),
    );
  });
});
