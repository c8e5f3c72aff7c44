import { createHash } from "node:crypto";
import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executeHostCommand, executePoolCommand, loadHost, loadPool } from "../../../commands/maskin/index.ts";
import { DomainError } from "../../../domain/shared/errors.ts";
import { allProjections, maskinHostsProjection, ProjectionRunner } from "../../../projections/index.ts";
import type { MaskinTables } from "../../../projections/maskin/hosts.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";

let h: ProjectionHarness;
let runner: ProjectionRunner;
let db: Kysely<MaskinTables>;

const context = { actor: { kind: "system", id: "maskin-test" }, correlationId: "c-maskin" } as const;
const t = (s: number) => new Date(Date.UTC(2026, 11, 1, 10, 0, s)).toISOString();
const digestOf = (token: string) => createHash("sha256").update(token).digest("hex");

beforeAll(async () => {
  h = await createHarness();
  db = h.db.withSchema("maskin") as Kysely<MaskinTables>;
  runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
  await runner.start();
});
afterAll(async () => {
  await runner?.stop();
  await h?.dispose();
});

async function host(hostId: string, command: Record<string, unknown>) {
  const result = await executeHostCommand(h.store, { hostId, ...command }, context);
  if (result.position) await runner.waitForPosition("maskin", result.position, 20_000);
  return result;
}
const row = (hostId: string) => db.selectFrom("hosts").selectAll().where("host_id", "=", hostId).executeTakeFirstOrThrow();

describe("maskin domain on Postgres", () => {
  it("is registered in allProjections", () => expect(allProjections).toContain(maskinHostsProjection));

  it("allocation is race-free: of 8 tasks racing for one host exactly one gets it", async () => {
    const attempts = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        executePoolCommand(
          h.store,
          { type: "AllocateHost", datacenter: "osl1", hostId: "race-host", taskId: `task-${i}`, tenantId: "a", projectId: "p", environmentId: null, at: t(0) },
          context,
          { maxRetries: 20 },
        ),
      ),
    );
    const won = attempts.filter((a) => a.status === "fulfilled");
    const refused = attempts.filter((a) => a.status === "rejected").map((a) => (a as PromiseRejectedResult).reason);
    expect(won).toHaveLength(1);
    expect(refused).toHaveLength(7);
    for (const error of refused) expect((error as DomainError).code).toBe("host_not_free");
    const pool = await loadPool(h.store, "osl1");
    expect(pool.state.allocations.size).toBe(1);
  });

  it("the read model follows a host from provisioning to ready to available, with power and drift", async () => {
    const H = "host-walk";
    const token = "one-time-token";
    await host(H, { type: "StartProvisioning", datacenter: "osl1", taskId: "tp", tenantId: "a", projectId: "p", environmentId: "e", role: "worker", at: t(1) });
    expect(await row(H)).toMatchObject({ state: "provisioning", stage: "allocated", task_id: "tp", tenant_id: "a", project_id: "p", environment_id: "e", datacenter: "osl1", drift: false, version: 0 });
    await host(H, { type: "SetDesiredPower", state: "on", taskId: "tp", at: t(2) });
    await host(H, { type: "RecordNetbootRequested", taskId: "tp", at: t(2) });
    await host(H, { type: "RecordPowerObservation", state: "off", observedAt: t(3), firstSeenAt: t(2), previousState: null });
    let r = await row(H);
    expect(r).toMatchObject({ stage: "netboot-requested", next_boot: "pxe", desired_power: "on", observed_power: "off", drift: true });
    expect(r.drift_since).toBeInstanceOf(Date);
    expect(r.netboot_requested_at?.toISOString()).toBe(t(2));
    await host(H, { type: "RecordPowerObservation", state: "on", observedAt: t(5), firstSeenAt: t(4), previousState: "off" });
    r = await row(H);
    expect(r).toMatchObject({ observed_power: "on", drift: false, drift_since: null });
    expect(r.observed_at?.toISOString()).toBe(t(5));

    await host(H, { type: "RecordNetbootFetched", mac: "52:54:00:12:34:01", tokenDigest: digestOf(token), at: t(6) });
    await expect(host(H, { type: "RecordInstallReported", tokenDigest: digestOf("guess"), outcome: "succeeded", at: t(7) })).rejects.toMatchObject({ code: "install_token_invalid" });
    await expect(host(H, { type: "CompleteProvisioning", taskId: "tp", at: t(7) })).rejects.toMatchObject({ code: "provisioning_not_installed" });
    await host(H, { type: "RecordInstallReported", tokenDigest: digestOf(token), outcome: "succeeded", message: "done", at: t(8) });
    await expect(host(H, { type: "RecordInstallReported", tokenDigest: digestOf(token), outcome: "succeeded", at: t(9) })).rejects.toMatchObject({ code: "install_token_invalid" });
    const done = await host(H, { type: "CompleteProvisioning", taskId: "tp", at: t(10) });
    r = await row(H);
    expect(r).toMatchObject({ state: "ready", stage: "installed", next_boot: "disk", install_outcome: "succeeded", version: done.version });
    expect(r.netboot_fetched_at?.toISOString()).toBe(t(6));
    expect(r.install_reported_at?.toISOString()).toBe(t(8));

    await host(H, { type: "StartRelease", taskId: "tr", at: t(11) });
    expect(await row(H)).toMatchObject({ state: "releasing", task_id: "tr", provision_task_id: "tp", release_task_id: "tr" });
    // Not back to the pool unwiped: the wipe first (the boot service's facts), then CompleteRelease.
    await expect(host(H, { type: "CompleteRelease", taskId: "tr", at: t(12) })).rejects.toMatchObject({ code: "wipe_not_done" });
    await host(H, { type: "RequestWipe", datacenter: "osl1", taskId: "tr", at: t(12) });
    expect(await row(H)).toMatchObject({ wipe_stage: "requested", wipe_task_id: "tr", wipe_netboot_fetched_at: null, wipe_reported_at: null });
    expect((await row(H)).wipe_requested_at?.toISOString()).toBe(t(12));
    await host(H, { type: "RecordWipeNetbootFetched", mac: "52:54:00:12:34:01", tokenDigest: digestOf("wipe-token"), at: t(12) });
    expect(await row(H)).toMatchObject({ wipe_stage: "netboot-fetched", wipe_task_id: "tr" });
    await expect(host(H, { type: "RecordWipeReported", tokenDigest: digestOf(token), outcome: "succeeded", at: t(12) })).rejects.toMatchObject({ code: "wipe_token_invalid" });
    await host(H, { type: "RecordWipeReported", tokenDigest: digestOf("wipe-token"), outcome: "succeeded", devices: ["/dev/sda"], bytesWiped: 512, at: t(12) });
    expect(await row(H)).toMatchObject({ state: "releasing", task_id: "tr", wipe_stage: "wiped", wipe_task_id: "tr", wipe_devices: ["/dev/sda"], wipe_bytes: "512" });
    expect((await row(H)).wipe_reported_at?.toISOString()).toBe(t(12));
    expect((await row(H)).aggregate).toMatchObject({ wipe: { taskId: "tr", stage: "wiped", devices: ["/dev/sda"], bytesWiped: 512 } });
    await host(H, { type: "CompleteRelease", taskId: "tr", at: t(12) });
    expect(await row(H)).toMatchObject({ state: "available", stage: null, task_id: null, tenant_id: null, netboot_fetched_at: null, observed_power: "on" });
    expect((await loadHost(h.store, H)).state.state).toBe("available");
  });

  it("a failed release shows as release_failed with its reason until another release takes over", async () => {
    const H = "host-release-failed";
    await host(H, { type: "StartProvisioning", datacenter: "osl1", taskId: "tp2", tenantId: "a", projectId: "p", environmentId: null, role: "worker", at: t(1) });
    await host(H, { type: "FailProvisioning", taskId: "tp2", reason: "install failed", at: t(2) });
    await host(H, { type: "StartRelease", taskId: "tr1", at: t(3) });
    await host(H, { type: "RequestWipe", datacenter: "osl1", taskId: "tr1", at: t(4) });
    await host(H, { type: "FailRelease", taskId: "tr1", reason: "deadline passed", at: t(5) });
    const r = await row(H);
    expect(r).toMatchObject({ state: "release_failed", task_id: "tr1", release_task_id: "tr1", release_failure_reason: "deadline passed", wipe_stage: "wipe-failed", wipe_task_id: "tr1", wipe_reported_at: null });
    expect(r.release_failed_at?.toISOString()).toBe(t(5));
    await expect(host(H, { type: "StartProvisioning", datacenter: "osl1", taskId: "tp3", tenantId: "a", projectId: "p", environmentId: null, role: "worker", at: t(6) })).rejects.toMatchObject({
      code: "host_not_available",
    });
    await host(H, { type: "StartRelease", taskId: "tr2", at: t(6) });
    expect(await row(H)).toMatchObject({ state: "releasing", task_id: "tr2", release_failure_reason: null, release_failed_at: null });
  });

  it("inventory hosts appear as available rows; a rebuild reproduces the model exactly", async () => {
    await h.store.append("datacenter-osl1", [
      {
        type: "HostRegistered",
        data: {
          datacenter: "osl1", hostId: "host-inv", name: "node-01", rack: "r01", position: null, vendor: null, model: null, role: "bare-metal", bmc: null,
          serial: "SN1", macs: ["52:54:00:12:34:09"], bmcAddress: null,
        },
        actor: context.actor,
        scope: { tenantId: "platform" },
        occurredAt: new Date(t(13)),
      },
    ], { expectedVersion: "any" });
    const last = await host("host-inv", { type: "RecordPowerObservation", state: "off", observedAt: t(15), firstSeenAt: t(14), previousState: null });
    expect(await row("host-inv")).toMatchObject({ name: "node-01", datacenter: "osl1", state: "available", observed_power: "off" });
    await runner.waitForPosition("maskin", last.position!, 20_000);
    const before = await runner.checksum("maskin");
    const result = await runner.rebuild("maskin", { verify: true });
    expect(result.swapped).toBe(true);
    const after = await runner.checksum("maskin");
    expect(after.tables).toEqual(before.tables);
  });
});
