import { describe, expect, it } from "vitest";
import { Lifecycle, ShutdownSignals, maskUrl } from "../../../cli/up/lifecycle.ts";

describe("Lifecycle", () => {
  it("stops in the reverse order of starting, keeps going past a failing step, and only once", async () => {
    const order: string[] = [];
    const warnings: string[] = [];
    const lifecycle = new Lifecycle((line) => warnings.push(line));
    lifecycle.defer("postgres", () => void order.push("postgres"));
    lifecycle.defer("pool", () => void order.push("pool"));
    lifecycle.defer("runner", async () => {
      order.push("runner");
      throw new Error("stuck");
    });
    lifecycle.defer("server", () => void order.push("server"));
    await Promise.all([lifecycle.close(), lifecycle.close()]);
    await lifecycle.close();
    expect(order).toEqual(["server", "runner", "pool", "postgres"]);
    expect(warnings).toEqual(["warning: stopping runner failed: stuck"]);
  });
});

describe("ShutdownSignals", () => {
  it("the first signal requests a stop; one within the grace period is the same Ctrl-C (npm forwards it); a later one forces", async () => {
    let now = 0;
    const forced: string[] = [];
    const signals = new ShutdownSignals((signal) => forced.push(signal), 1000, () => now);
    expect(signals.stopping).toBe(false);
    signals.receive("SIGINT");
    expect(signals.stopping).toBe(true);
    expect(await signals.requested).toBe("SIGINT");
    now = 300;
    signals.receive("SIGINT");
    expect(forced).toEqual([]);
    now = 1500;
    signals.receive("SIGINT");
    expect(forced).toEqual(["SIGINT"]);
  });
});

describe("maskUrl", () => {
  it("hides passwords in URLs and parameters, keeps the rest", () => {
    expect(maskUrl("postgres://dv:s3cret@db.example:5432/dataverket")).toBe("postgres://dv:****@db.example:5432/dataverket");
    expect(maskUrl("postgres://postgres@127.0.0.1:54329/dataverket")).toBe("postgres://postgres@127.0.0.1:54329/dataverket");
    expect(maskUrl("postgres://h/db?sslmode=require&password=abc")).toBe("postgres://h/db?sslmode=require&password=****");
    expect(maskUrl("nats://user:pw@nats:4222")).toBe("nats://user:****@nats:4222");
    expect(maskUrl("host=db user=dv password=hunter2 dbname=x")).toBe("host=db user=dv password=**** dbname=x");
  });
});

describe("dv up's default data dir", () => {
  it("is DV_DATA_DIR, else under XDG_DATA_HOME or ~/.local/share, and /var/lib/dv for root", async () => {
    const { defaultDataDir } = await import("../../../cli/up/command.ts");
    expect(defaultDataDir({ DV_DATA_DIR: "/srv/dv" }, 0)).toBe("/srv/dv");
    expect(defaultDataDir({}, 0)).toBe("/var/lib/dv");
    expect(defaultDataDir({ XDG_DATA_HOME: "/home/ada/.data" }, 1000)).toBe("/home/ada/.data/dv");
    expect(defaultDataDir({}, 1000)).toMatch(/\/\.local\/share\/dv$/);
  });
});
