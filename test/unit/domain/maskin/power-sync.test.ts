import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  HostPowerStateObservedSchema,
  initialPowerSync,
  observePower,
  type HostPowerStateObserved,
  type PowerRead,
  type PowerState,
  type PowerSyncState,
  type PowerSyncStep,
} from "../../../../domain/maskin/power-sync.ts";

const H = "host-01";
const t = (second: number) => new Date(Date.UTC(2026, 11, 1, 10, 0, second)).toISOString();
const on = (second: number): PowerRead => ({ ok: true, state: "on", at: t(second) });
const off = (second: number): PowerRead => ({ ok: true, state: "off", at: t(second) });
const failed = (second: number): PowerRead => ({ ok: false, error: "bmc_unreachable: no answer within 10000 ms", at: t(second) });

/** Feeds reads one by one, as the observer does; returns every step. */
function run(reads: readonly PowerRead[], desired: PowerState | null = null, start: PowerSyncState = initialPowerSync(H)): PowerSyncStep[] {
  const steps: PowerSyncStep[] = [];
  let state = start;
  for (const read of reads) {
    const step = observePower(state, read, desired);
    steps.push(step);
    state = step.state;
  }
  return steps;
}
const recorded = (steps: PowerSyncStep[]) => steps.map((s) => s.observed).filter((o): o is HostPowerStateObserved => o !== null);

describe("power-state sync: two agreeing reads make a change", () => {
  it("a BMC whose answer flips once is not recorded; two agreeing reads are", () => {
    const known = initialPowerSync(H, { state: "on", observedAt: t(0) });
    // The node runs; the BMC answers "off" once, then "on" again.
    expect(recorded(run([on(10), off(20), on(30), on(40)], null, known))).toEqual([]);
    // The node really went off: two reads in a row say so.
    const steps = run([on(10), off(20), off(30)], null, known);
    expect(steps.map((s) => s.observed)).toEqual([
      null,
      null,
      { hostId: H, state: "off", observedAt: t(30), firstSeenAt: t(20), previousState: "on" },
    ]);
    expect(HostPowerStateObservedSchema.parse(steps[2]!.observed)).toEqual(steps[2]!.observed);
    expect(steps[2]!.state).toMatchObject({ accepted: "off", acceptedAt: t(30), pending: null });
  });

  it("a host's first observation also needs two agreeing reads", () => {
    const steps = run([on(1), on(2), on(3)]);
    expect(steps.map((s) => s.observed?.state ?? null)).toEqual([null, "on", null]);
    expect(steps[1]!.observed).toMatchObject({ previousState: null, firstSeenAt: t(1), observedAt: t(2) });
  });

  it("a failed read is never a change and breaks a pending pair", () => {
    const known = initialPowerSync(H, { state: "on", observedAt: t(0) });
    const steps = run([failed(10), failed(20), off(30), failed(40), off(50), off(60)], "on", known);
    expect(steps.map((s) => s.observed?.state ?? null)).toEqual([null, null, null, null, null, "off"]);
    expect(steps.slice(0, 5).every((s) => s.state.accepted === "on" && s.drift === null)).toBe(true);
    expect(steps[1]!.state).toMatchObject({ consecutiveFailures: 2, lastFailure: { at: t(20) } });
    expect(steps[2]!.state).toMatchObject({ consecutiveFailures: 0, pending: { state: "off", firstSeenAt: t(30) } });
    expect(steps[3]!.state.pending).toBeNull();
    // The off pair that counts is 50 + 60, not 30 + 50 (a failure lay between them).
    expect(steps[5]!.observed).toMatchObject({ firstSeenAt: t(50), observedAt: t(60) });
  });

  it("a BMC that only ever fails records nothing and shows no drift", () => {
    const steps = run([failed(1), failed(2), failed(3)], "on");
    expect(recorded(steps)).toEqual([]);
    expect(steps.at(-1)!.state).toMatchObject({ accepted: null, consecutiveFailures: 3 });
    expect(steps.every((s) => s.drift === null)).toBe(true);
  });

  it("a restarted observer does not record the state it already recorded", () => {
    const known = initialPowerSync(H, { state: "off", observedAt: t(0) });
    expect(recorded(run([off(1), off(2), off(3)], null, known))).toEqual([]);
  });
});

describe("power-state sync: drift against the desired state", () => {
  it("desired on, observed off is drift, from the confirming read on, and ends when the host is on", () => {
    const known = initialPowerSync(H, { state: "on", observedAt: t(0) });
    const steps = run([off(10), off(20), off(30), on(40), on(50)], "on", known);
    expect(steps.map((s) => s.drift !== null)).toEqual([false, true, true, true, false]);
    expect(steps[1]!.drift).toEqual({ hostId: H, desired: "on", observed: "off", since: t(20) });
    expect(steps[3]!.drift!.since).toBe(t(20)); // one "on" read does not end it
    expect(steps.map((s) => s.driftChanged)).toEqual([false, true, false, false, true]);
  });

  it("no desired state, no drift; a desired state that matches, no drift", () => {
    expect(run([off(1), off(2)], null).at(-1)!.drift).toBeNull();
    expect(run([off(1), off(2)], "off").at(-1)!.drift).toBeNull();
    expect(run([off(1), off(2)], "on").at(-1)!.drift).toMatchObject({ desired: "on", observed: "off" });
  });
});

// ---------------------------------------------------------------- properties

const readArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom<PowerState>("on", "off").map((state) => ({ ok: true as const, state })) },
  { weight: 1, arbitrary: fc.constant({ ok: false as const, error: "bmc_unreachable" }) },
);
/** Reads one second apart. */
const readsArb = fc.array(readArb, { maxLength: 60 }).map((list) => list.map((r, i): PowerRead => ({ ...r, at: t(i) })));
const startArb = fc.constantFrom<PowerState | null>(null, "on", "off").map((s) => initialPowerSync(H, s ? { state: s, observedAt: t(0) } : null));
const desiredArb = fc.constantFrom<PowerState | null>(null, "on", "off");

describe("power-state sync: properties", () => {
  it("every recorded change is confirmed by the read right before it: no single deviating read is ever recorded", () => {
    fc.assert(
      fc.property(readsArb, startArb, desiredArb, (reads, start, desired) => {
        const steps = run(reads, desired, start);
        steps.forEach((step, i) => {
          if (!step.observed) return;
          const current = reads[i]!;
          const before = reads[i - 1];
          expect(current.ok && current.state === step.observed.state).toBe(true);
          expect(before !== undefined && before.ok && before.state === step.observed.state).toBe(true);
        });
      }),
    );
  });

  it("a read that differs from both neighbours never changes the accepted state", () => {
    fc.assert(
      fc.property(readsArb, startArb, fc.nat(), (reads, start, pick) => {
        const steps = run(reads, null, start);
        const i = reads.length === 0 ? -1 : pick % reads.length;
        const read = reads[i];
        if (!read?.ok) return;
        const differs = (r: PowerRead | undefined) => r === undefined || !r.ok || r.state !== read.state;
        if (!differs(reads[i - 1]) || !differs(reads[i + 1])) return;
        const acceptedBefore = i === 0 ? start.accepted : steps[i - 1]!.state.accepted;
        expect(steps[i]!.state.accepted).toBe(acceptedBefore);
        expect(steps[i]!.observed).toBeNull();
      }),
    );
  });

  it("failed reads never record, never change the accepted state, never change drift", () => {
    fc.assert(
      fc.property(readsArb, startArb, desiredArb, (reads, start, desired) => {
        const steps = run(reads, desired, start);
        reads.forEach((read, i) => {
          if (read.ok) return;
          const before = i === 0 ? start : steps[i - 1]!.state;
          expect(steps[i]!.observed).toBeNull();
          expect(steps[i]!.state.accepted).toBe(before.accepted);
          if (i > 0) expect(steps[i]!.drift).toEqual(steps[i - 1]!.drift);
        });
      }),
    );
  });

  it("model: the accepted state is that of the last two agreeing consecutive reads (else the start), and each change is recorded once", () => {
    fc.assert(
      fc.property(readsArb, startArb, desiredArb, (reads, start, desired) => {
        const steps = run(reads, desired, start);
        let model = start.accepted;
        let changes = 0;
        reads.forEach((read, i) => {
          const before = reads[i - 1];
          if (read.ok && before?.ok && before.state === read.state && model !== read.state) {
            model = read.state;
            changes++;
          }
          expect(steps[i]!.state.accepted).toBe(model);
          const expectedDrift = desired !== null && model !== null && model !== desired;
          expect(steps[i]!.drift !== null).toBe(expectedDrift);
        });
        expect(recorded(steps)).toHaveLength(changes);
      }),
    );
  });
});
