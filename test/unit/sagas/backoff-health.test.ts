import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { backoffCeilingMs, backoffDelayMs, retryAt } from "../../../sagas/runtime/backoff.ts";
import { healthBoundMs, workerDependency, workerHealth } from "../../../sagas/runtime/health.ts";

describe("exponential backoff with full jitter", () => {
  const policy = { baseMs: 100, maxMs: 10_000 };

  it("the ceiling doubles per attempt up to the maximum", () => {
    expect([1, 2, 3, 4, 7, 8, 50, 10_000].map((n) => backoffCeilingMs(n, policy))).toEqual([100, 200, 400, 800, 6_400, 10_000, 10_000, 10_000]);
  });

  it("the delay is within [0, ceiling) for any attempt and random draw", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, draw) => {
        const delay = backoffDelayMs(attempt, policy, () => draw);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(backoffCeilingMs(attempt, policy));
      }),
    );
  });

  it("full jitter: the extremes of the random draw reach both ends", () => {
    expect(backoffDelayMs(3, policy, () => 0)).toBe(0);
    expect(backoffDelayMs(3, policy, () => 0.999_999)).toBe(399);
    expect(retryAt(new Date("2026-01-01T00:00:00.000Z"), 2, policy, () => 0.5).toISOString()).toBe("2026-01-01T00:00:00.100Z");
  });
});

describe("worker health bound", () => {
  const policy = { heartbeatIntervalMs: 2_000, missedHeartbeats: 3 };
  const since = new Date("2026-01-01T00:00:00.000Z");
  const at = (ms: number) => new Date(since.getTime() + ms);
  const check = (lastSeen: Date | null, now: Date) => workerHealth({ service: "maskin", datacenter: "osl1", lastSeen, watchingSince: since, now, policy });

  it("the bound is interval x missed heartbeats", () => {
    expect(healthBoundMs(policy)).toBe(6_000);
    expect(workerDependency("maskin", "osl1")).toBe("worker maskin@osl1");
  });

  it("up while the last heartbeat is within the bound, down after, with its time", () => {
    expect(check(at(1_000), at(7_000))).toEqual({ up: true });
    expect(check(at(1_000), at(7_001))).toEqual({ up: false, reason: "no heartbeat from maskin workers in osl1 since 2026-01-01T00:00:01.000Z" });
  });

  it("never seen: not judged before a whole bound of watching, then down as never seen", () => {
    expect(check(null, at(6_000))).toEqual({ up: true });
    const verdict = check(null, at(6_001));
    expect(verdict.up).toBe(false);
    expect(!verdict.up && verdict.reason).toMatch(/^no heartbeat from maskin workers in osl1: never seen/);
  });
});
