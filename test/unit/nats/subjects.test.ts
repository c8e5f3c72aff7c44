import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { natsNamespace } from "../../../adapters/nats/namespace.ts";
import { serviceForStream, subjectForEvent, typeWords } from "../../../adapters/nats/subjects.ts";

/** A literal subject of dv.*.evt.>: tokens of [a-z0-9_], at least one after evt. */
const VALID_EVENT_SUBJECT = /^dv\.[a-z0-9_]+\.evt(\.[a-z0-9_]+)+$/;

describe("subjectForEvent", () => {
  it.each([
    ["ProjectCreated", "tenant-0190a1b2", "dv.sentral.evt.project.created"],
    ["TenantQuotaSet", "tenant-0190a1b2", "dv.sentral.evt.tenant_quota.set"],
    ["EnvironmentArchived", "tenant-x", "dv.sentral.evt.environment.archived"],
    ["TenantCreated", "tenant-x", "dv.sentral.evt.tenant.created"],
    ["RoleGranted", "identity-user:0190a1b2", "dv.identitet.evt.role.granted"],
    ["RoleRevoked", "identity-bootstrap-admin", "dv.identitet.evt.role.revoked"],
    ["TaskStepStarted", "task-0190a1b2", "dv.task.evt.step_started"],
    ["TaskCreated", "task-1", "dv.task.evt.created"],
    ["TaskStepAttemptFailed", "task-1", "dv.task.evt.step_attempt_failed"],
    ["VmCreated", "vm-0190", "dv.vm.evt.vm.created"],
    ["VmIPAssigned", "vm-1", "dv.vm.evt.vm_ip.assigned"],
    ["Ticked", "s-ab12-3", "dv.s.evt.s.ticked"],
  ])("%s in %s -> %s", (type, streamId, subject) => {
    expect(subjectForEvent({ type, streamId })).toBe(subject);
  });

  it("turns characters NATS reserves into _", () => {
    expect(subjectForEvent({ type: "Odd.Type*Made>", streamId: "we ird.x-1" })).toBe("dv.we_ird_x.evt.odd_type.made");
  });

  it("splits types into lowercase words", () => {
    expect(typeWords("TenantQuotaSet")).toEqual(["tenant", "quota", "set"]);
    expect(typeWords("HTTPServerStarted")).toEqual(["http", "server", "started"]);
  });

  it("knows the services by stream prefix, else takes the part before the first dash", () => {
    expect(serviceForStream("tenant-1")).toBe("sentral");
    expect(serviceForStream("identity-user:1")).toBe("identitet");
    expect(serviceForStream("task-1")).toBe("task");
    expect(serviceForStream("hypervisor-dc1-7")).toBe("hypervisor");
    expect(serviceForStream("nodash")).toBe("nodash");
  });

  it("always yields a valid subject under dv.*.evt.> (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.string({ minLength: 1, maxLength: 60 }), (type, streamId) => {
        const subject = subjectForEvent({ type, streamId });
        expect(subject).toMatch(VALID_EVENT_SUBJECT);
        // Qualifying keeps it a valid subject inside the namespace's DV_EVENTS filter.
        const ns = natsNamespace("t1");
        expect(ns.unqualify(ns.qualify(subject))).toBe(subject);
        expect(ns.qualify(subject).startsWith("t1.dv.")).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it("always yields a valid subject for CamelCase types (property)", () => {
    const word = fc.tuple(fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ"), fc.stringMatching(/^[a-z0-9]{0,8}$/)).map(([a, b]) => a + b);
    fc.assert(
      fc.property(fc.array(word, { minLength: 2, maxLength: 5 }), fc.constantFrom("tenant-", "identity-", "task-", "vm-", "x-"), fc.uuid(), (words, prefix, id) => {
        const type = words.join("");
        const subject = subjectForEvent({ type, streamId: prefix + id });
        expect(subject).toMatch(VALID_EVENT_SUBJECT);
        if (prefix === "task-") expect(subject.split(".").length).toBe(4);
        else expect(subject.split(".").length).toBe(5);
      }),
    );
  });
});

describe("natsNamespace", () => {
  it("is the bare dv tree in production", () => {
    const ns = natsNamespace();
    expect(ns.subject("maskin", "cmd", "power", "dc1")).toBe("dv.maskin.cmd.power.dc1");
    expect(ns.subject("*", "evt", ">")).toBe("dv.*.evt.>");
    expect(ns.stream("DV_EVENTS")).toBe("DV_EVENTS");
    expect(ns.qualify("dv.sentral.evt.project.created")).toBe("dv.sentral.evt.project.created");
  });

  it("isolates a test's subjects and streams", () => {
    const ns = natsNamespace("t1a2b");
    expect(ns.subject("*", "evt", ">")).toBe("t1a2b.dv.*.evt.>");
    expect(ns.stream("DV_WORK")).toBe("T1A2B_DV_WORK");
    expect(ns.unqualify("t1a2b.dv.task.evt.created")).toBe("dv.task.evt.created");
    expect(() => ns.unqualify("dv.task.evt.created")).toThrow(/outside namespace/);
  });

  it("refuses what would not be a subject or stream name", () => {
    expect(() => natsNamespace("a.b")).toThrow(RangeError);
    expect(() => natsNamespace("A")).toThrow(RangeError);
    expect(() => natsNamespace().subject("a.b")).toThrow(RangeError);
    expect(() => natsNamespace().subject(">", "x")).toThrow(RangeError);
    expect(() => natsNamespace().stream("DV.EVENTS")).toThrow(RangeError);
    expect(() => natsNamespace().qualify("other.x")).toThrow(RangeError);
  });
});
