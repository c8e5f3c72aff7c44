import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importInventory, InventoryImportError, loadDatacenter } from "../../../commands/inventory/index.ts";
import type { InventoryDocument } from "../../../commands/inventory/index.ts";
import { executePortCommand, loadHypervisor, loadPortPool } from "../../../commands/maskin/vm/index.ts";
import { validateInventoryDocument } from "../../../api/schemas/inventory.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";

/** Hosts with `role: hypervisor` become Maskin hypervisors (capacity aggregate) when their inventory is imported. */

let db: ProjectionHarness;
beforeAll(async () => {
  db = await createHarness();
});
afterAll(async () => {
  await db.dispose();
});

const context = { actor: { kind: "user", id: "importer" }, correlationId: "c-1" } as const;

function doc(options: { capacity?: { vcpus: number; memoryMiB: number; diskGiB: number }; overcommit?: Record<string, number> } = {}): InventoryDocument {
  return {
    datacenters: [
      {
        name: "hvdc",
        ...(options.overcommit ? { overcommit: options.overcommit } : {}),
        racks: [
          {
            name: "r01",
            hosts: [
              { name: "metal-1", serial: "HV-SN-1", macs: ["52:54:00:aa:00:01"] },
              { name: "hv-1", serial: "HV-SN-2", macs: ["52:54:00:aa:00:02"], role: "hypervisor", capacity: options.capacity ?? { vcpus: 8, memoryMiB: 16384, diskGiB: 100 } },
            ],
          },
        ],
      },
    ],
  };
}

async function hvEvents(): Promise<string[]> {
  const { rows } = await db.pool.query("select event_type from eventstore.events where stream_id like 'maskin-hv-%' order by global_position");
  return rows.map((r: { event_type: string }) => r.event_type);
}

const hostIdOf = (report: Awaited<ReturnType<typeof importInventory>>, name: string) => report.items.find((i) => i.kind === "host" && i.name === name)!.id!;

describe("hypervisors from the inventory import", () => {
  it("the JSON Schema requires capacity on a hypervisor and refuses it on other hosts", () => {
    const noCapacity = structuredClone(doc()) as unknown as { datacenters: Array<{ racks: Array<{ hosts: Array<Record<string, unknown>> }> }> };
    delete noCapacity.datacenters[0]!.racks[0]!.hosts[1]!.capacity;
    noCapacity.datacenters[0]!.racks[0]!.hosts[0]!.capacity = { vcpus: 1, memoryMiB: 1, diskGiB: 1 };
    const result = validateInventoryDocument(noCapacity);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual(
      expect.arrayContaining([
        { path: "datacenters[0].racks[0].hosts[1].capacity", message: "is required" },
        { path: "datacenters[0].racks[0].hosts[0].capacity", message: "capacity is only for hosts with role hypervisor" },
      ]),
    );
    expect(validateInventoryDocument(doc({ overcommit: { cpu: 2 } })).ok).toBe(true);
    expect(validateInventoryDocument(doc({ overcommit: { cpu: 0 } })).ok).toBe(false);
  });

  it("registers the hypervisor with the default overcommit; importing twice changes nothing", async () => {
    const dry = await importInventory({ store: db.store, secrets: null }, doc(), { dryRun: true }, context);
    expect(await hvEvents()).toEqual([]);
    expect(dry.items.find((i) => i.name === "hv-1")?.outcome).toBe("created");

    const first = await importInventory({ store: db.store, secrets: null }, doc(), { dryRun: false }, context);
    const hostId = hostIdOf(first, "hv-1");
    const { state } = await loadHypervisor(db.store, hostId);
    expect(state).toMatchObject({
      hostId,
      name: "hv-1",
      datacenter: "hvdc",
      capacity: { vcpus: 8, memoryMiB: 16384, diskGiB: 100 },
      overcommit: { cpu: 4, memory: 1, disk: 1 },
      allocatable: { vcpus: 32, memoryMiB: 16384, diskGiB: 100 },
    });
    expect((await loadHypervisor(db.store, hostIdOf(first, "metal-1"))).state.hostId).toBeNull();
    expect(await hvEvents()).toEqual(["HypervisorRegistered"]);

    const second = await importInventory({ store: db.store, secrets: null }, doc(), { dryRun: false }, context);
    expect(second.position).toBeNull();
    expect(second.items.every((i) => i.outcome === "unchanged")).toBe(true);
    expect(await hvEvents()).toEqual(["HypervisorRegistered"]);
  });

  it("a changed capacity or overcommit is reported as a change `capacity` and recorded", async () => {
    const changed = doc({ capacity: { vcpus: 16, memoryMiB: 16384, diskGiB: 100 }, overcommit: { cpu: 2, memory: 1.5 } });
    const dry = await importInventory({ store: db.store, secrets: null }, changed, { dryRun: true }, context);
    const item = dry.items.find((i) => i.name === "hv-1")!;
    expect(item).toMatchObject({ outcome: "updated", changes: ["capacity"] });
    expect(await hvEvents()).toEqual(["HypervisorRegistered"]);

    const report = await importInventory({ store: db.store, secrets: null }, changed, { dryRun: false }, context);
    expect(report.position).not.toBeNull();
    const { state } = await loadHypervisor(db.store, item.id!);
    expect(state.overcommit).toEqual({ cpu: 2, memory: 1.5, disk: 1 });
    expect(state.allocatable).toEqual({ vcpus: 32, memoryMiB: 24576, diskGiB: 100 });
    expect(await hvEvents()).toEqual(["HypervisorRegistered", "HypervisorCapacityChanged"]);
    const again = await importInventory({ store: db.store, secrets: null }, changed, { dryRun: false }, context);
    expect(again.summary).toMatchObject({ created: 0, updated: 0 });
  });

  it("a refused registration fails the whole import with the host's path", async () => {
    // The same host id registered in another datacenter (as if it moved): the capacity aggregate refuses.
    const { executeCapacityCommand } = await import("../../../commands/maskin/vm/index.ts");
    const elsewhere = { type: "RegisterHypervisor", hostId: "hv-moved", name: "hv-9", datacenter: "other", capacity: { vcpus: 1, memoryMiB: 1, diskGiB: 1 }, at: new Date().toISOString() };
    await executeCapacityCommand(db.store, elsewhere, context);
    const moved: InventoryDocument = { datacenters: [{ name: "hvdc2", racks: [{ name: "r01", hosts: [{ name: "hv-9", serial: "HV-SN-9", macs: ["52:54:00:aa:00:09"], role: "hypervisor", capacity: { vcpus: 1, memoryMiB: 1, diskGiB: 1 } }] }] }] };
    const error = await importInventory({ store: db.store, secrets: null, newId: () => "hv-moved" }, moved, { dryRun: false }, context).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InventoryImportError);
    expect((error as InventoryImportError).errors).toEqual([expect.objectContaining({ path: "datacenters[0].racks[0].hosts[0].capacity", code: "hypervisor_datacenter_mismatch" })]);
    const { rows } = await db.pool.query("select 1 from eventstore.events where stream_id = 'datacenter-hvdc2'");
    expect(rows).toEqual([]);
  });

  it("a hypervisor's sshPortRange sets its SSH port pool; importing it again changes nothing; a range that leaves a held port out is refused at its path", async () => {
    const withRange = (first: number, last: number): InventoryDocument => {
      const d = structuredClone(doc()) as unknown as { datacenters: Array<{ racks: Array<{ hosts: Array<Record<string, unknown>> }> }> };
      d.datacenters[0]!.racks[0]!.hosts[1]!.sshPortRange = { first, last };
      return d as unknown as InventoryDocument;
    };
    expect(validateInventoryDocument(withRange(23000, 23009)).ok).toBe(true);
    const report = await importInventory({ store: db.store, secrets: null }, withRange(23000, 23009), { dryRun: false }, context);
    const hostId = hostIdOf(report, "hv-1");
    expect(report.items.find((i) => i.name === "hv-1")).toMatchObject({ outcome: "updated", changes: ["capacity"] });
    expect((await loadPortPool(db.store, hostId)).state.range).toEqual({ first: 23000, last: 23009 });
    const again = await importInventory({ store: db.store, secrets: null }, withRange(23000, 23009), { dryRun: false }, context);
    expect(again.position).toBeNull();

    const at = new Date().toISOString();
    await executePortCommand(db.store, { type: "AllocateSshPort", hostId, vmId: "vm-held", nicIndex: 0, taskId: "t-held", at }, context);
    const error = await importInventory({ store: db.store, secrets: null }, withRange(23001, 23009), { dryRun: false }, context).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InventoryImportError);
    expect((error as InventoryImportError).errors).toEqual([
      expect.objectContaining({ path: "datacenters[0].racks[0].hosts[1].sshPortRange", code: "ssh_port_range_conflict" }),
    ]);
    expect((await loadPortPool(db.store, hostId)).state.range).toEqual({ first: 23000, last: 23009 });
  });

  it("a BMC's cipherSuite (ipmitool -C) is kept with the host's BMC settings; a change is reported as bmc.cipherSuite", async () => {
    const withSuite = (cipherSuite: number): InventoryDocument => ({
      datacenters: [{ name: "cipherdc", racks: [{ name: "r01", hosts: [{ name: "old-bmc", serial: "C-SN-1", macs: ["52:54:00:c1:00:01"], bmc: { driver: "ipmi", address: "10.9.0.1", username: "admin", cipherSuite } }] }] }],
    });
    expect(validateInventoryDocument(withSuite(17)).ok).toBe(true);
    expect(validateInventoryDocument(withSuite(256)).ok).toBe(false);
    const first = await importInventory({ store: db.store, secrets: null }, withSuite(17), { dryRun: false }, context);
    const hostId = hostIdOf(first, "old-bmc");
    const bmcOf = async () => {
      const dc = await loadDatacenter(db.store, "cipherdc");
      if (dc.status !== "present") throw new Error("datacenter cipherdc was not imported");
      return dc.hosts.get(hostId)!.bmc;
    };
    expect(await bmcOf()).toMatchObject({ driver: "ipmi", cipherSuite: 17 });
    expect((await importInventory({ store: db.store, secrets: null }, withSuite(17), { dryRun: false }, context)).position).toBeNull();
    const changed = await importInventory({ store: db.store, secrets: null }, withSuite(3), { dryRun: false }, context);
    expect(changed.items.find((i) => i.name === "old-bmc")).toMatchObject({ outcome: "updated", changes: ["bmc.cipherSuite"] });
    expect(await bmcOf()).toMatchObject({ cipherSuite: 3 });
  });
});
