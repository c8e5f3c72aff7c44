import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConcurrencyError } from "../../../adapters/eventstore/errors.ts";
import type { LogPosition } from "../../../adapters/eventstore/port.ts";
import {
  executeCapacityCommand,
  executeDiskImageCommand,
  executeImageCommand,
  executeVmCommand,
  loadDiskImage,
  loadHypervisor,
  loadVm,
} from "../../../commands/maskin/vm/index.ts";
import { candidateFrom, placeVm, vmMac, type PlacementDecision } from "../../../domain/maskin/vm/index.ts";
import type { DomainError } from "../../../domain/shared/errors.ts";
import { allProjections, maskinVmsProjection, ProjectionRunner } from "../../../projections/index.ts";
import type { MaskinVmTables } from "../../../projections/maskin/vms.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";

let h: ProjectionHarness;
let runner: ProjectionRunner;
let db: Kysely<MaskinVmTables>;

const context = { actor: { kind: "system", id: "maskin-vm-test" }, correlationId: "c-maskin-vm" } as const;
const t = (s: number) => new Date(Date.UTC(2026, 11, 1, 10, 0, s)).toISOString();
const DC = "osl1";
const HYPERVISORS = ["hv-a", "hv-b", "hv-c"] as const;
const small = { vcpus: 1, memoryMiB: 1024, diskGiB: 10 };
const template = { image: { name: "debian", version: "12" }, sizeGiB: 10, storageClass: "local" };
let last: LogPosition | null = null;

beforeAll(async () => {
  h = await createHarness();
  db = h.db.withSchema("maskin_vms") as Kysely<MaskinVmTables>;
  runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
  await runner.start();
});
afterAll(async () => {
  await runner?.stop();
  await h?.dispose();
});

function track<R extends { position: LogPosition | null }>(result: R): R {
  if (result.position) last = result.position;
  return result;
}
async function settle() {
  if (last) await runner.waitForPosition("maskin_vms", last, 20_000);
}

async function registerHypervisor(hostId: string, capacity: { vcpus: number; memoryMiB: number; diskGiB: number }) {
  return track(
    await executeCapacityCommand(
      h.store,
      { type: "RegisterHypervisor", hostId, name: hostId, datacenter: DC, capacity, overcommit: { cpu: 1, memory: 1, disk: 1 }, at: t(0) },
      context,
    ),
  );
}

async function createVm(vmId: string, resources: typeof small, antiAffinity: { group: string; maxPerHypervisor: number } | null) {
  return track(
    await executeVmCommand(
      h.store,
      {
        type: "CreateVm",
        vmId,
        name: vmId,
        tenantId: "acme",
        projectId: "web",
        environmentId: "prod",
        datacenter: DC,
        resources,
        image: { name: "debian", version: "12" },
        disk: { name: `disk-${vmId}`, mode: "CreateIfNotExist", template },
        nics: [{ network: "user" }],
        antiAffinity,
        quota: { limits: {}, usage: { vms: 0, vcpus: 0, memoryMiB: 0 } },
        taskId: `task-${vmId}`,
        at: t(1),
      },
      context,
    ),
  );
}

/** What the saga does: place on candidates built from the hypervisors' states, reserve on the chosen one, record it on the VM. */
async function place(vmId: string, resources: typeof small, antiAffinity: { group: string; maxPerHypervisor: number } | null): Promise<PlacementDecision> {
  track(await executeVmCommand(h.store, { type: "StartPlacement", vmId, taskId: `task-${vmId}`, at: t(2) }, context));
  const states = await Promise.all(HYPERVISORS.map(async (hostId) => (await loadHypervisor(h.store, hostId)).state));
  const decision = placeVm({ vmId, datacenter: DC, resources, networks: ["user"], antiAffinity, spreadGroup: null }, states.map((s) => candidateFrom(s, [])));
  if (decision.outcome === "placed") {
    track(
      await executeCapacityCommand(
        h.store,
        { type: "ReserveCapacity", hostId: decision.chosen.hostId, vmId, resources, groups: antiAffinity ? [antiAffinity.group] : [], taskId: `task-${vmId}`, at: t(3) },
        context,
      ),
    );
    track(await executeVmCommand(h.store, { type: "RecordPlacement", vmId, chosen: decision.chosen, rejected: [...decision.rejected], taskId: `task-${vmId}`, at: t(4) }, context));
  } else {
    track(
      await executeVmCommand(
        h.store,
        { type: "RecordPlacementBlocked", vmId, reason: decision.reason, blocking: decision.blocking, rejected: [...decision.rejected], taskId: `task-${vmId}`, at: t(4) },
        context,
      ),
    );
  }
  return decision;
}

describe("maskin VMs on Postgres", () => {
  it("is registered in allProjections, in its own schema", () => {
    expect(allProjections).toContain(maskinVmsProjection);
    expect(maskinVmsProjection.name).toBe("maskin_vms");
  });

  it("places 6 anti-affine VMs 2/2/2 over 3 hypervisors; a 7th that fits nowhere is unplaceable for capacity", async () => {
    for (const hostId of HYPERVISORS) await registerHypervisor(hostId, { vcpus: 3, memoryMiB: 4096, diskGiB: 100 });
    const group = { group: "web", maxPerHypervisor: 2 };
    const chosen: string[] = [];
    for (let i = 1; i <= 6; i++) {
      const vmId = `vm-${i}`;
      await createVm(vmId, small, group);
      const decision = await place(vmId, small, group);
      expect(decision.outcome).toBe("placed");
      if (decision.outcome === "placed") chosen.push(decision.chosen.hostId);
    }
    expect(chosen.filter((x) => x === "hv-a")).toHaveLength(2);
    expect(chosen.filter((x) => x === "hv-b")).toHaveLength(2);
    expect(chosen.filter((x) => x === "hv-c")).toHaveLength(2);
    for (const hostId of HYPERVISORS) {
      const { state } = await loadHypervisor(h.store, hostId);
      expect(state.reservations.size).toBe(2);
      expect(state.used).toEqual({ vcpus: 2, memoryMiB: 2048, diskGiB: 20 });
      for (const r of state.reservations.values()) expect(r.groups).toEqual(["web"]);
    }

    const big = { vcpus: 2, memoryMiB: 1024, diskGiB: 10 };
    await createVm("vm-7", big, null);
    const seventh = await place("vm-7", big, null);
    expect(seventh).toMatchObject({ outcome: "unplaceable", reason: "capacity", blocking: "soft" });
    expect(seventh.rejected.map((r) => [r.hostId, r.reason])).toEqual(HYPERVISORS.map((x) => [x, "capacity"]));
    expect((await loadVm(h.store, "vm-7")).state).toMatchObject({ lifecycle: "placing", blocked: { reason: "capacity" } });

    await settle();
    const vms = await db.selectFrom("vms").selectAll().orderBy("vm_id").execute();
    expect(vms).toHaveLength(7);
    for (const [i, vm] of vms.slice(0, 6).entries()) {
      expect(vm).toMatchObject({ tenant_id: "acme", project_id: "web", environment_id: "prod", lifecycle: "provisioning", desired: "running", drift: null, host_id: chosen[i] });
      expect(vm.placement).toMatchObject({ outcome: "placed", chosen: { hostId: chosen[i] } });
      expect(vm.nics).toEqual([{ index: 0, network: "user", mac: vmMac(vm.vm_id, 0) }]);
    }
    expect(vms[6]).toMatchObject({ vm_id: "vm-7", lifecycle: "placing", host_id: null, placement: { outcome: "blocked", reason: "capacity", blocking: "soft" } });
    expect(vms[6]!.placement?.rejected).toHaveLength(3);
    const hvs = await db.selectFrom("hypervisors").selectAll().orderBy("host_id").execute();
    expect(hvs.map((x) => [x.host_id, x.datacenter, x.vm_count, x.used, x.cordoned])).toEqual(
      HYPERVISORS.map((x) => [x, DC, 2, { vcpus: 2, memoryMiB: 2048, diskGiB: 20 }, false]),
    );
    expect(hvs[0]).toMatchObject({ capacity: { vcpus: 3, memoryMiB: 4096, diskGiB: 100 }, overcommit: { cpu: 1, memory: 1, disk: 1 }, allocatable: { vcpus: 3 } });
  });

  it("two VMs racing for a hypervisor's last slot: exactly one reservation wins", async () => {
    await registerHypervisor("hv-last", small);
    const attempts = await Promise.allSettled(
      ["race-1", "race-2"].map((vmId) =>
        executeCapacityCommand(h.store, { type: "ReserveCapacity", hostId: "hv-last", vmId, resources: small, groups: [], taskId: `task-${vmId}`, at: t(5) }, context, { maxRetries: 20 }),
      ),
    );
    const won = attempts.filter((a) => a.status === "fulfilled");
    const refused = attempts.filter((a) => a.status === "rejected").map((a) => (a as PromiseRejectedResult).reason as DomainError);
    expect(won).toHaveLength(1);
    expect(refused.map((e) => e.code)).toEqual(["insufficient_capacity"]);
    for (const w of attempts) if (w.status === "fulfilled") track(w.value);
    expect((await loadHypervisor(h.store, "hv-last")).state.reservations.size).toBe(1);

    // Both decided on the same version (pinned): the store refuses the second append.
    await registerHypervisor("hv-pinned", small);
    const { version } = await loadHypervisor(h.store, "hv-pinned");
    const pinned = await Promise.allSettled(
      ["pin-1", "pin-2"].map((vmId) =>
        executeCapacityCommand(
          h.store,
          { type: "ReserveCapacity", hostId: "hv-pinned", vmId, resources: small, groups: [], taskId: `task-${vmId}`, at: t(6) },
          { ...context, expectedVersion: version === "no_stream" ? "no_stream" : version },
        ),
      ),
    );
    expect(pinned.filter((a) => a.status === "fulfilled")).toHaveLength(1);
    const lost = pinned.find((a) => a.status === "rejected") as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(ConcurrencyError);
    const hv = await loadHypervisor(h.store, "hv-pinned");
    expect(hv.state.reservations.size).toBe(1);
    for (const w of pinned) if (w.status === "fulfilled") track(w.value);
    await settle();
    const row = await db.selectFrom("hypervisors").selectAll().where("host_id", "=", "hv-last").executeTakeFirstOrThrow();
    expect(row).toMatchObject({ vm_count: 1, used: small });
  });

  it("a referenced disk image is Terminating on delete and deleted when the last reference goes", async () => {
    const ref = (vmId: string, at: number) =>
      executeDiskImageCommand(h.store, { type: "ReferenceDiskImage", datacenter: DC, name: "shared", vmId, mode: "CreateIfNotExist", template, taskId: `task-${vmId}`, at: t(at) }, context);
    const first = track(await ref("vm-1", 10));
    expect(first.events.map((e) => e.type)).toEqual(["DiskImageCreated", "DiskImageReferenced"]);
    const second = track(
      await executeDiskImageCommand(
        h.store,
        { type: "ReferenceDiskImage", datacenter: DC, name: "shared", vmId: "vm-2", mode: "CreateIfNotExist", template: { ...template, sizeGiB: 20 }, taskId: "task-vm-2", at: t(11) },
        context,
      ),
    );
    expect(second.events[0]).toMatchObject({ type: "DiskImageReferenced", data: { references: 2, warnings: [{ field: "sizeGiB", existing: "10", requested: "20" }] } });
    // Filed under the VM's scope.
    const recorded = await h.store.readStream("maskin-disk-osl1-shared", { from: 0, direction: "forward" });
    expect(recorded[0]!.scope).toEqual({ tenantId: "acme", projectId: "web", environmentId: "prod" });

    const del = track(await executeDiskImageCommand(h.store, { type: "DeleteDiskImage", datacenter: DC, name: "shared", taskId: "task-del", at: t(12) }, context));
    expect(del.events.map((e) => [e.type, (e.data as { referencedBy?: string[] }).referencedBy])).toEqual([["DiskImageDeletionRequested", ["vm-1", "vm-2"]]]);
    expect((await loadDiskImage(h.store, DC, "shared")).state.status).toBe("terminating");
    await expect(ref("vm-3", 13)).rejects.toMatchObject({ code: "disk_image_terminating" });

    await settle();
    expect(await db.selectFrom("disk_images").selectAll().where("name", "=", "shared").executeTakeFirstOrThrow()).toMatchObject({
      datacenter: DC,
      status: "terminating",
      references: 2,
      generation: 1,
      deletion_task_id: "task-del",
      created_for_vm_id: "vm-1",
    });
    const why = await db.selectFrom("disk_image_references").selectAll().where("name", "=", "shared").orderBy("vm_id").execute();
    expect(why.map((r) => [r.vm_id, r.event_id, r.task_id])).toEqual([
      ["vm-1", first.events[1]!.id, "task-vm-1"],
      ["vm-2", second.events[0]!.id, "task-vm-2"],
    ]);
    expect(why[1]!.warnings).toEqual([{ field: "sizeGiB", existing: "10", requested: "20" }]);

    const release = (vmId: string, at: number) =>
      executeDiskImageCommand(h.store, { type: "ReleaseDiskImageReference", datacenter: DC, name: "shared", vmId, taskId: `task-${vmId}`, at: t(at) }, context);
    const r1 = track(await release("vm-1", 14));
    expect(r1.events.map((e) => e.type)).toEqual(["DiskImageReferenceReleased"]);
    expect((await loadDiskImage(h.store, DC, "shared")).state.status).toBe("terminating");
    await settle();
    expect(await db.selectFrom("disk_image_references").select("vm_id").where("name", "=", "shared").execute()).toEqual([{ vm_id: "vm-2" }]);

    const r2 = track(await release("vm-2", 15));
    expect(r2.events.map((e) => e.type)).toEqual(["DiskImageReferenceReleased", "DiskImageDeleted"]);
    expect((await loadDiskImage(h.store, DC, "shared")).state.status).toBe("deleted");
    await settle();
    const gone = await db.selectFrom("disk_images").selectAll().where("name", "=", "shared").executeTakeFirstOrThrow();
    expect(gone).toMatchObject({ status: "deleted", references: 0, deletion_task_id: "task-del" });
    expect(gone.deleted_at?.toISOString()).toBe(t(15));
    expect(await db.selectFrom("disk_image_references").select("vm_id").where("name", "=", "shared").execute()).toEqual([]);
  });

  it("images are platform-scoped; VM commands follow the VM's scope; a rebuild reproduces the read models exactly", async () => {
    const image = track(
      await executeImageCommand(
        h.store,
        {
          type: "RegisterImageVersion",
          name: "debian",
          version: "12",
          content: { digest: "a".repeat(64), format: "qcow2", source: { kind: "url", url: "https://example.test/debian.qcow2" }, osFamily: "debian", guestInit: "cloud-init" },
          at: t(20),
        },
        context,
      ),
    );
    expect(image.events.map((e) => e.type)).toEqual(["ImageVersionRegistered"]);
    const [imageEvent] = await h.store.readStream("maskin-image-debian", { from: 0, direction: "forward" });
    expect(imageEvent!.scope).toEqual({ tenantId: "platform" });
    await expect(
      executeVmCommand(h.store, { type: "SetVmDesiredState", vmId: "vm-1", desired: "stopped", taskId: "t-x", at: t(21) }, { ...context, scope: { tenantId: "other" } }),
    ).rejects.toMatchObject({ code: "scope_mismatch" });
    track(await executeVmCommand(h.store, { type: "RecordRuntimeObservation", vmId: "vm-1", observed: "absent", at: t(21) }, context));
    const vmEvents = await h.store.readStream("maskin-vm-vm-1", { from: 0, direction: "forward" });
    expect(vmEvents.at(-1)!.scope).toEqual({ tenantId: "acme", projectId: "web", environmentId: "prod" });

    await settle();
    const before = await runner.checksum("maskin_vms");
    expect(before.tables.find((x) => x.table === "vms")?.rows).toBe(7);
    const result = await runner.rebuild("maskin_vms", { verify: true });
    expect(result.swapped).toBe(true);
    const after = await runner.checksum("maskin_vms");
    expect(after.tables).toEqual(before.tables);
    expect(after.digest).toBe(before.digest);
  });
});
