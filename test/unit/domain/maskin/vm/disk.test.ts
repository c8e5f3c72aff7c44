import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DiskImageCommandSchema,
  diskImageDecider,
  diskImageEvent,
  whyNotDeleted,
  type DiskImageCommandInput,
  type DiskImageEvent,
} from "../../../../../domain/maskin/vm/disk.ts";
import { diskImageStreamId } from "../../../../../domain/maskin/vm/stream.ts";
import { fold } from "../../../../../domain/shared/decider.ts";
import { DomainError } from "../../../../../domain/shared/errors.ts";
import { deciderSpec } from "../../../support/decider-spec.ts";

const spec = deciderSpec(diskImageDecider);
const at = "2026-12-01T10:00:00.000Z";
const where = { datacenter: "osl1", name: "shared-data" };
const template = { image: { name: "debian", version: "12.1" }, sizeGiB: 20, storageClass: "local" };
const cmd = (input: DiskImageCommandInput) => DiskImageCommandSchema.parse(input);
const ref = (vmId: string, mode: "CreateIfNotExist" | "FailIfNotExist" = "CreateIfNotExist", t: typeof template | null = template) =>
  cmd({ type: "ReferenceDiskImage", ...where, vmId, mode, template: t, taskId: `t-${vmId}`, at });
const release = (vmId: string) => cmd({ type: "ReleaseDiskImageReference", ...where, vmId, taskId: `d-${vmId}`, at });
const del = cmd({ type: "DeleteDiskImage", ...where, taskId: "del", at });
const created = (vmId: string, generation = 1) => diskImageEvent("DiskImageCreated", { ...where, generation, template, createdForVmId: vmId, taskId: `t-${vmId}`, at });
const referenced = (vmId: string, references: number, warnings: Array<{ field: "image" | "sizeGiB" | "storageClass"; existing: string; requested: string }> = [], mode: "CreateIfNotExist" | "FailIfNotExist" = "CreateIfNotExist") =>
  diskImageEvent("DiskImageReferenced", { ...where, vmId, mode, warnings, references, taskId: `t-${vmId}`, at });
const released = (vmId: string, references: number) => diskImageEvent("DiskImageReferenceReleased", { ...where, vmId, references, taskId: `d-${vmId}`, at });

describe("Disk image decider (reference counting)", () => {
  it("stream id", () => expect(diskImageStreamId("osl1", "shared-data")).toBe("maskin-disk-osl1-shared-data"));

  it("CreateIfNotExist creates from the template and references; FailIfNotExist on a missing one fails; a template is required to create", () => {
    spec.given([]).when(ref("vm1")).then([created("vm1"), referenced("vm1", 1)]);
    spec.given([]).when(ref("vm1", "FailIfNotExist", null)).thenFails("disk_image_not_found", where);
    expect(() => ref("vm1", "CreateIfNotExist", null)).toThrow();
  });

  it("an existing disk image wins: a template mismatch is a warning on the reference; the same VM again is a no-op", () => {
    spec
      .given([created("vm1"), referenced("vm1", 1)])
      .when(ref("vm2", "CreateIfNotExist", { image: { name: "debian", version: "12.2" }, sizeGiB: 40, storageClass: "local" }))
      .then([
        referenced("vm2", 2, [
          { field: "image", existing: "debian@12.1", requested: "debian@12.2" },
          { field: "sizeGiB", existing: "20", requested: "40" },
        ]),
      ]);
    spec.given([created("vm1"), referenced("vm1", 1)]).when(ref("vm2", "FailIfNotExist", null)).then([referenced("vm2", 2, [], "FailIfNotExist")]);
    spec.given([created("vm1"), referenced("vm1", 1)]).when(ref("vm1")).thenNothing();
  });

  it("deleting a referenced disk image makes it Terminating; no new references; deleted when the last reference goes", () => {
    const history = [created("vm1"), referenced("vm1", 1), referenced("vm2", 2)];
    const requested = diskImageEvent("DiskImageDeletionRequested", { ...where, referencedBy: ["vm1", "vm2"], taskId: "del", at });
    const { state } = spec.given(history).when(del).then([requested]);
    expect(whyNotDeleted(state)).toEqual({
      status: "terminating",
      references: [
        { vmId: "vm1", mode: "CreateIfNotExist", warnings: [], addedBy: { event: "DiskImageReferenced", taskId: "t-vm1", at } },
        { vmId: "vm2", mode: "CreateIfNotExist", warnings: [], addedBy: { event: "DiskImageReferenced", taskId: "t-vm2", at } },
      ],
    });
    const terminating = [...history, requested];
    spec.given(terminating).when(ref("vm3")).thenFails("disk_image_terminating", { referencedBy: ["vm1", "vm2"] });
    spec.given(terminating).when(del).thenNothing();
    spec.given(terminating).when(release("vm1")).then([released("vm1", 1)]);
    const gone = spec
      .given([...terminating, released("vm1", 1)])
      .when(release("vm2"))
      .then([released("vm2", 0), diskImageEvent("DiskImageDeleted", { ...where, generation: 1, taskId: "d-vm2", at })]);
    expect(gone.state.status).toBe("deleted");
  });

  it("deleting an unreferenced one deletes it at once; a missing one is not found; a deleted name can be created again", () => {
    const deleted = diskImageEvent("DiskImageDeleted", { ...where, generation: 1, taskId: "del", at });
    spec.given([created("vm1"), referenced("vm1", 1), released("vm1", 0)]).when(del).then([deleted]);
    spec.given([]).when(del).thenFails("disk_image_not_found");
    const history = [created("vm1"), referenced("vm1", 1), released("vm1", 0), deleted];
    spec.given(history).when(del).thenNothing();
    spec.given(history).when(ref("vm1", "FailIfNotExist", null)).thenFails("disk_image_not_found");
    spec.given(history).when(ref("vm2")).then([created("vm2", 2), referenced("vm2", 1)]);
    spec.given([created("vm1"), referenced("vm1", 1)]).when(release("vm9")).thenNothing();
  });

  it("property: the reference count never goes negative, matches the set of referencing VMs, and deletion happens only at zero", () => {
    const vms = ["vm1", "vm2", "vm3"];
    const commandArb = fc.oneof(
      fc.tuple(fc.constantFrom(...vms), fc.constantFrom("CreateIfNotExist" as const, "FailIfNotExist" as const)).map(([vm, mode]) => ref(vm, mode, mode === "CreateIfNotExist" ? template : null)),
      fc.constantFrom(...vms).map(release),
      fc.constant(del),
    );
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 40 }), (commands) => {
        let history: DiskImageEvent[] = [];
        const model = new Set<string>();
        for (const command of commands) {
          const before = fold(diskImageDecider, history);
          const outcome = diskImageDecider.decide(command, before);
          if (outcome instanceof DomainError) {
            expect(["disk_image_not_found", "disk_image_terminating"]).toContain(outcome.code);
            if (outcome.code === "disk_image_terminating") expect(before.status).toBe("terminating");
            continue;
          }
          for (const event of outcome) {
            if (event.type === "DiskImageReferenced") model.add(event.data.vmId);
            if (event.type === "DiskImageReferenceReleased") model.delete(event.data.vmId);
            if (event.type === "DiskImageDeleted") expect(model.size).toBe(0);
            if (event.type === "DiskImageReferenced" || event.type === "DiskImageReferenceReleased") {
              expect(event.data.references).toBe(model.size);
              expect(event.data.references).toBeGreaterThanOrEqual(0);
            }
          }
          history = [...history, ...outcome];
          const state = fold(diskImageDecider, history);
          expect([...state.references.keys()].sort()).toEqual([...model].sort());
          if (state.status === "terminating") expect(state.references.size).toBeGreaterThan(0);
          if (before.status === "terminating" && state.status === "terminating") expect(outcome.some((e) => e.type === "DiskImageReferenced")).toBe(false);
        }
      }),
      { numRuns: 500 },
    );
  });
});
