import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeyedMutex } from "../../../adapters/bmc/serial.ts";

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe("KeyedMutex: one session per BMC", () => {
  it("runs work for one key one at a time, in call order", async () => {
    const lock = new KeyedMutex();
    const log: string[] = [];
    let inside = 0;
    let most = 0;
    const job = (name: string, ms: number) =>
      lock.run("bmc-a", async () => {
        inside++;
        most = Math.max(most, inside);
        log.push(`start ${name}`);
        await tick(ms);
        log.push(`end ${name}`);
        inside--;
        return name;
      });
    expect(await Promise.all([job("1", 15), job("2", 1), job("3", 5)])).toEqual(["1", "2", "3"]);
    expect(most).toBe(1);
    expect(log).toEqual(["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
    expect(lock.busyKeys).toBe(0);
  });

  it("runs work for different keys at the same time", async () => {
    const lock = new KeyedMutex();
    let inside = 0;
    let most = 0;
    const job = (key: string) =>
      lock.run(key, async () => {
        inside++;
        most = Math.max(most, inside);
        await tick(10);
        inside--;
      });
    await Promise.all([job("a"), job("b"), job("c")]);
    expect(most).toBe(3);
  });

  it("a failure releases the key for the work queued behind it", async () => {
    const lock = new KeyedMutex();
    const first = lock.run("k", async () => {
      throw new Error("bmc said no");
    });
    const second = lock.run("k", async () => "ran");
    await expect(first).rejects.toThrow("bmc said no");
    expect(await second).toBe("ran");
    expect(lock.busyKeys).toBe(0);
  });

  it("property: per key, no two jobs overlap and each key's jobs run in call order", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom("a", "b", "c"), fc.nat(3)), { minLength: 1, maxLength: 25 }), async (jobs) => {
        const lock = new KeyedMutex();
        const inside = new Map<string, number>();
        const order = new Map<string, number[]>();
        await Promise.all(
          jobs.map(([key, ms], i) =>
            lock.run(key, async () => {
              expect(inside.get(key) ?? 0).toBe(0);
              inside.set(key, 1);
              order.set(key, [...(order.get(key) ?? []), i]);
              await tick(ms);
              inside.set(key, 0);
            }),
          ),
        );
        for (const [key, seen] of order) {
          expect(seen).toEqual(jobs.flatMap(([k], i) => (k === key ? [i] : [])));
        }
        expect(lock.busyKeys).toBe(0);
      }),
      { numRuns: 30 },
    );
  });
});
