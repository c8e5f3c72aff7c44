import { Kysely, PostgresDialect } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { z } from "zod";
import {
  DiskPreparePayloadSchema,
  DiskRemovePayloadSchema,
  SeedBuildPayloadSchema,
  VmIdPayloadSchema,
  VmStartPayloadSchema,
  VmStopPayloadSchema,
} from "../../../adapters/workers/hypervisor/handlers.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorker, WorkError, type RunningWorker, type WorkHandler } from "../../../adapters/workers/worker.ts";
import { VmReadModel } from "../../../api/read/vms.ts";
import {
  executeCapacityCommand,
  executeDiskImageCommand,
  executeImageCommand,
  executeVmCommand,
  loadDiskImage,
  loadHypervisor,
  loadPortPool,
  loadVm,
} from "../../../commands/maskin/vm/index.ts";
import { executeTaskCommand } from "../../../commands/task/index.ts";
import { portsOfVm, vmDrift } from "../../../domain/maskin/vm/index.ts";
import type { ExistingTask } from "../../../domain/task/state.ts";
import { maskinVmsProjection, ProjectionRunner } from "../../../projections/index.ts";
import type { MaskinVmTables } from "../../../projections/maskin/vms.ts";
import {
  capacityDependency,
  diskImageRemoveSaga,
  vmCreateSaga,
  vmCreateTask,
  vmDeleteSaga,
  vmDeleteTask,
  vmPowerTask,
  vmRebootSaga,
  vmReconcileSaga,
  vmStartSaga,
  vmStopSaga,
  type VmSagaDeps,
} from "../../../sagas/maskin/vm/index.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { createSagaHarness, USER, type SagaHarness } from "./support.ts";

/**
 * The VM sagas over the real log, relay, saga runtime, NATS JetStream and
 * maskin_vms read model. The hypervisor workers here are a fast double: one
 * worker per host (target = host id, as `dv worker --host` runs them) that
 * checks every payload against the real worker's schemas
 * (adapters/workers/hypervisor/handlers.ts) and records what it was asked;
 * it starts no QEMU (the real-QEMU end-to-end test is separate).
 */

const DC = "osl1";
const HOSTS = ["hv-a", "hv-b", "hv-c"] as const;
const ctx = { actor: USER, correlationId: "req-vm" };
const scope = { tenantId: "acme", projectId: "web", environmentId: null };
const image = { name: "debian", version: "12" };
const template = { image, sizeGiB: 10, storageClass: "local" };
const small = { vcpus: 1, memoryMiB: 1024, diskGiB: 10 };

interface Recorded {
  readonly host: string;
  readonly action: string;
  readonly payload: Record<string, unknown>;
}

describe("VM sagas over the real runtime with recording hypervisor workers", () => {
  let h: SagaHarness;
  let runtime: SagaRuntime<VmSagaDeps>;
  let runner: ProjectionRunner;
  let db: Kysely<MaskinVmTables>;
  const workers: RunningWorker[] = [];
  const recorded: Recorded[] = [];

  const handlers = (host: string): Record<string, WorkHandler> => {
    const record =
      <S extends z.ZodType>(action: string, schema: S, answer: (p: z.infer<S>) => Record<string, unknown> = () => ({})): WorkHandler =>
      async (request) => {
        const parsed = schema.safeParse(request.payload);
        if (!parsed.success) throw new WorkError(`invalid payload for ${action}: ${parsed.error.message}`, { transient: false, code: "invalid_payload" });
        recorded.push({ host, action, payload: request.payload as Record<string, unknown> });
        return answer(parsed.data);
      };
    return {
      "disk-prepare": record("disk-prepare", DiskPreparePayloadSchema),
      "seed-build": record("seed-build", SeedBuildPayloadSchema),
      "vm-start": record("vm-start", VmStartPayloadSchema, () => ({ alreadyRunning: false })),
      "vm-stop": record("vm-stop", VmStopPayloadSchema, () => ({ method: "acpi" })),
      "vm-reboot": record("vm-reboot", VmIdPayloadSchema),
      "vm-destroy": record("vm-destroy", VmIdPayloadSchema),
      "disk-remove": record("disk-remove", DiskRemovePayloadSchema),
    };
  };

  beforeAll(async () => {
    h = await createSagaHarness("vm");
    db = new Kysely<MaskinVmTables>({ dialect: new PostgresDialect({ pool: h.pool }) }).withSchema("maskin_vms");
    runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [maskinVmsProjection], retry: { initialMs: 50, maxMs: 200 } });
    await runner.start();
    runtime = new SagaRuntime<VmSagaDeps>({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
      sagas: [vmCreateSaga, vmDeleteSaga, vmStartSaga, vmStopSaga, vmRebootSaga, vmReconcileSaga, diskImageRemoveSaga],
      deps: { store: h.store, vms: new VmReadModel(h.pool) },
      ackWaitMs: 5_000,
    });
    runtime.start();
    for (const host of HOSTS) {
      workers.push(await startWorker({ nc: h.nc, namespace: h.namespace, service: "hypervisor", datacenter: DC, target: host, handlers: handlers(host), heartbeatIntervalMs: 500 }));
      await executeCapacityCommand(
        h.store,
        { type: "RegisterHypervisor", hostId: host, name: host, datacenter: DC, capacity: { vcpus: 8, memoryMiB: 16384, diskGiB: 200 }, overcommit: { cpu: 1, memory: 1, disk: 1 }, at: new Date().toISOString() },
        ctx,
      );
    }
    await executeImageCommand(
      h.store,
      {
        type: "RegisterImageVersion",
        ...image,
        content: { digest: "a".repeat(64), format: "qcow2", source: { kind: "file", path: "/images/debian-12.qcow2" }, osFamily: "debian", guestInit: "cloud-init" },
        at: new Date().toISOString(),
      },
      ctx,
    );
    // The directory lists hypervisors from the read model: wait until it has them.
    const vms = new VmReadModel(h.pool);
    const deadline = Date.now() + 20_000;
    while ((await vms.hypervisorsIn(DC)).length < HOSTS.length) {
      if (Date.now() > deadline) throw new Error("the read model never listed the hypervisors");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }, 60_000);
  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await runtime?.stop();
    await runner?.stop();
    await h?.dispose();
  });

  /** What the REST create does: CreateVm, then the task (same id). */
  async function createVm(
    vmId: string,
    options: { antiAffinity?: { group: string; maxPerHypervisor: number }; disk?: { name: string; mode: "CreateIfNotExist" | "FailIfNotExist" }; resources?: typeof small } = {},
  ): Promise<string> {
    const taskId = `create-${vmId}`;
    const disk = options.disk ?? { name: `disk-${vmId}`, mode: "CreateIfNotExist" as const };
    await executeVmCommand(
      h.store,
      {
        type: "CreateVm",
        vmId,
        name: vmId,
        ...scope,
        datacenter: DC,
        resources: options.resources ?? small,
        image,
        disk: { ...disk, template: disk.mode === "CreateIfNotExist" ? template : null },
        nics: [{ network: "user" }],
        antiAffinity: options.antiAffinity ?? null,
        quota: { limits: {}, usage: { vms: 0, vcpus: 0, memoryMiB: 0 } },
        taskId,
        at: new Date().toISOString(),
      },
      ctx,
    );
    await executeTaskCommand(
      h.store,
      vmCreateTask({ taskId, vmId, vmName: vmId, datacenter: DC, scope, seed: { sshAuthorizedKeys: ["ssh-ed25519 AAAAC3 tenant@example"] }, correlationId: `req-${vmId}`, now: new Date() }),
      { actor: USER, correlationId: `req-${vmId}`, scope: { tenantId: "acme" } },
    );
    return taskId;
  }

  async function deleteVm(vmId: string): Promise<string> {
    const state = (await loadVm(h.store, vmId)).state;
    const taskId = `delete-${vmId}`;
    await executeTaskCommand(
      h.store,
      vmDeleteTask({ taskId, vmId, vmName: vmId, datacenter: DC, scope, placed: state.placement !== null, correlationId: `req-del-${vmId}`, now: new Date() }),
      { actor: USER, correlationId: `req-del-${vmId}`, scope: { tenantId: "acme" } },
    );
    return taskId;
  }

  const succeeded = (t: ExistingTask) => t.status === "succeeded";
  const vmRow = (vmId: string) => db.selectFrom("vms").selectAll().where("vm_id", "=", vmId).executeTakeFirstOrThrow();

  it("places 6 VMs with anti-affinity (max 2) over 3 hypervisors 2/2/2, explains each choice, gives each its own SSH port and starts it on its host", async () => {
    const ids = ["web-1", "web-2", "web-3", "web-4", "web-5", "web-6"];
    const tasks = await Promise.all(ids.map((id) => createVm(id, { antiAffinity: { group: "web", maxPerHypervisor: 2 } })));
    await h.waitFor(tasks, succeeded, 90_000, "six VM create tasks");

    const perHost = new Map<string, string[]>();
    for (const id of ids) {
      const state = (await loadVm(h.store, id)).state;
      expect(state.lifecycle).toBe("running");
      const chosen = state.placement!.chosen;
      perHost.set(chosen.hostId, [...(perHost.get(chosen.hostId) ?? []), id]);
      // Every hypervisor not chosen is explained.
      expect(state.placement!.rejected.map((r) => r.hostId).sort()).toEqual(HOSTS.filter((x) => x !== chosen.hostId));
    }
    expect([...perHost.values()].map((v) => v.length).sort()).toEqual([2, 2, 2]);
    for (const host of HOSTS) {
      const hv = (await loadHypervisor(h.store, host)).state;
      expect(hv.reservations.size).toBe(2);
      const ports = (perHost.get(host) ?? []).map(async (id) => portsOfVm((await loadPortPool(h.store, host)).state, id));
      expect((await Promise.all(ports)).map((p) => p.map((x) => x.port)).flat().sort()).toEqual([22000, 22001]);
    }
    // The worker of the chosen host got disk-prepare, seed-build and vm-start for it, with the VM's MAC and SSH port.
    for (const id of ids) {
      const state = (await loadVm(h.store, id)).state;
      const host = state.placement!.chosen.hostId;
      const mine = recorded.filter((r) => r.payload.vmId === id);
      expect(mine.map((r) => [r.host, r.action])).toEqual([
        [host, "disk-prepare"],
        [host, "seed-build"],
        [host, "vm-start"],
      ]);
      const port = portsOfVm((await loadPortPool(h.store, host)).state, id)[0]!.port;
      expect(mine[2]!.payload).toMatchObject({ vcpus: 1, memoryMiB: 1024, boot: { kind: "disk" }, disk: { prepared: true }, seed: true, nics: [{ mac: state.vm!.nics[0]!.mac, sshHostPort: port }] });
      expect(mine[1]!.payload).toMatchObject({ hostname: id, instanceId: id, sshAuthorizedKeys: ["ssh-ed25519 AAAAC3 tenant@example"] });
      expect(mine[0]!.payload).toMatchObject({ disk: { name: `disk-${id}`, generation: 1, sizeGiB: 10 }, image: { name: "debian", version: "12", format: "qcow2", digest: "a".repeat(64) } });
    }
  }, 120_000);

  it("a 7th VM of the group is blocked (capacity, soft) with the explanation, and placed once a VM of the group is deleted", async () => {
    const taskId = await createVm("web-7", { antiAffinity: { group: "web", maxPerHypervisor: 2 } });
    const [blocked] = await h.waitFor([taskId], (t) => t.blocked !== null, 30_000, "the 7th VM's task to block");
    expect(blocked!.blocked).toMatchObject({ step: "place", dependency: capacityDependency(DC), kind: "soft" });
    expect(blocked!.blocked!.reason).toContain("anti_affinity");
    expect(blocked!.status).not.toBe("failed");
    const state = (await loadVm(h.store, "web-7")).state;
    expect(state.lifecycle).toBe("placing");
    expect(state.blocked!.rejected.map((r) => r.reason)).toEqual(["anti_affinity", "anti_affinity", "anti_affinity"]);

    const victim = "web-1";
    const victimHost = (await loadVm(h.store, victim)).state.placement!.chosen.hostId;
    const deleteTask = await deleteVm(victim);
    await h.waitFor([deleteTask, taskId], succeeded, 60_000, "the delete and the 7th create");
    expect((await loadVm(h.store, victim)).state.lifecycle).toBe("deleted");
    expect(recorded.some((r) => r.action === "vm-destroy" && r.host === victimHost && r.payload.vmId === victim)).toBe(true);
    const seventh = (await loadVm(h.store, "web-7")).state;
    expect(seventh.lifecycle).toBe("running");
    expect(seventh.placement!.chosen.hostId).toBe(victimHost);
    expect((await h.task(taskId)).blocked).toBeNull();
    // The victim's SSH port went back to the pool and the 7th VM got it (lowest free).
    const ports = (await loadPortPool(h.store, victimHost)).state;
    expect(portsOfVm(ports, victim)).toEqual([]);
    expect(portsOfVm(ports, "web-7")).toHaveLength(1);
  }, 120_000);

  it("an 8th VM of the group is blocked until a new hypervisor registers, then placed there", async () => {
    const taskId = await createVm("web-8", { antiAffinity: { group: "web", maxPerHypervisor: 2 } });
    await h.waitFor([taskId], (t) => t.blocked !== null, 30_000, "the 8th VM's task to block");
    workers.push(await startWorker({ nc: h.nc, namespace: h.namespace, service: "hypervisor", datacenter: DC, target: "hv-d", handlers: handlers("hv-d"), heartbeatIntervalMs: 500 }));
    await executeCapacityCommand(
      h.store,
      { type: "RegisterHypervisor", hostId: "hv-d", name: "hv-d", datacenter: DC, capacity: { vcpus: 8, memoryMiB: 16384, diskGiB: 200 }, overcommit: { cpu: 1, memory: 1, disk: 1 }, at: new Date().toISOString() },
      ctx,
    );
    await h.waitFor([taskId], succeeded, 60_000, "the 8th VM's create");
    expect((await loadVm(h.store, "web-8")).state.placement!.chosen.hostId).toBe("hv-d");
  }, 90_000);

  it("disk image reference counting: two VMs share a disk; deleting it leaves it terminating; deleting both VMs deletes it and removes its files", async () => {
    const shared = { name: "shared", mode: "CreateIfNotExist" as const };
    // db-2 only references the disk (FailIfNotExist): it is asked for once db-1 has created it.
    await h.waitFor([await createVm("db-1", { disk: shared })], succeeded, 60_000, "db-1");
    await h.waitFor([await createVm("db-2", { disk: { name: "shared", mode: "FailIfNotExist" } })], succeeded, 60_000, "db-2");
    let disk = (await loadDiskImage(h.store, DC, "shared")).state;
    expect([...disk.references.keys()].sort()).toEqual(["db-1", "db-2"]);

    await executeDiskImageCommand(h.store, { type: "DeleteDiskImage", datacenter: DC, name: "shared", taskId: "del-disk-shared", at: new Date().toISOString() }, { ...ctx, scope: { tenantId: "acme" } });
    expect((await loadDiskImage(h.store, DC, "shared")).state.status).toBe("terminating");

    const first = await deleteVm("db-1");
    const [done] = await h.waitFor([first], succeeded, 60_000, "delete db-1");
    expect(done!.steps.find((s) => s.name === "release")?.status).toBe("completed");
    disk = (await loadDiskImage(h.store, DC, "shared")).state;
    expect(disk.status).toBe("terminating");
    expect([...disk.references.keys()]).toEqual(["db-2"]);
    expect(recorded.some((r) => r.action === "disk-remove")).toBe(false);

    const db2Host = (await loadVm(h.store, "db-2")).state.placement!.chosen.hostId;
    const second = await deleteVm("db-2");
    await h.waitFor([second], succeeded, 60_000, "delete db-2");
    expect((await loadDiskImage(h.store, DC, "shared")).state.status).toBe("deleted");
    // DiskImageDeleted starts the removal of its files on the hypervisor of the VM that held the last reference.
    const removal = "disk-remove-osl1-shared-g1";
    const deadline = Date.now() + 30_000;
    while (!(await h.task(removal).then(() => true, () => false))) {
      if (Date.now() > deadline) throw new Error("DiskImageDeleted started no removal task");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await h.waitFor([removal], succeeded, 30_000, "the disk removal");
    expect(recorded.filter((r) => r.action === "disk-remove")).toEqual([{ host: db2Host, action: "disk-remove", payload: { name: "shared", generation: 1 } }]);
  }, 180_000);

  it("FailIfNotExist on a missing disk image fails the task with the reason; the VM fails and gives its capacity and SSH port back", async () => {
    const taskId = await createVm("orphan-1", { disk: { name: "nope", mode: "FailIfNotExist" } });
    const [failed] = await h.waitFor([taskId], (t) => t.status === "failed", 60_000, "the create to fail");
    expect(failed!.failure).toMatchObject({ code: "disk_image_not_found" });
    expect(failed!.failure!.reason).toContain("disk image nope does not exist in osl1");
    const deadline = Date.now() + 20_000;
    for (;;) {
      const state = (await loadVm(h.store, "orphan-1")).state;
      const host = state.placement?.chosen.hostId;
      const held = host ? (await loadHypervisor(h.store, host)).state.reservations.has("orphan-1") : false;
      const ports = host ? portsOfVm((await loadPortPool(h.store, host)).state, "orphan-1") : [];
      if (state.lifecycle === "failed" && !held && ports.length === 0) {
        expect(state.failure).toContain("disk image nope does not exist");
        break;
      }
      if (Date.now() > deadline) throw new Error(`VM not failed/released: ${state.lifecycle} held=${held} ports=${ports.length}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect((await vmRow("orphan-1")).lifecycle).toBe("failed");
  }, 90_000);

  it("cancelling a create while its placement is blocked on capacity fails the VM (no VM stays placing)", async () => {
    const taskId = await createVm("too-big", { resources: { vcpus: 1, memoryMiB: 1_000_000, diskGiB: 1 } });
    const [blocked] = await h.waitFor([taskId], (t) => t.blocked !== null, 30_000, "the create to block on capacity");
    expect(blocked!.blocked).toMatchObject({ step: "place", kind: "soft" });
    await executeTaskCommand(h.store, { type: "RequestCancellation", taskId, reason: "changed my mind", at: new Date().toISOString() }, { actor: USER, correlationId: "cancel-too-big", scope: { tenantId: "acme" } });
    await h.waitFor([taskId], (t) => t.status === "cancelled", 30_000, "the create to be cancelled");
    const state = (await loadVm(h.store, "too-big")).state;
    expect(state.lifecycle).toBe("failed");
    expect(state.failure).toContain("task cancelled: changed my mind");
  }, 60_000);

  it("stop, start, reboot and reconcile go to the VM's hypervisor; reconcile of a VM in sync answers 'in sync'", async () => {
    const vmId = "web-2";
    const host = (await loadVm(h.store, vmId)).state.placement!.chosen.hostId;
    const run = async (operation: "start" | "stop" | "reboot" | "reconcile") => {
      const state = (await loadVm(h.store, vmId)).state;
      const taskId = `${operation}-${vmId}-${Date.now()}`;
      await executeTaskCommand(
        h.store,
        vmPowerTask({ operation, taskId, vmId, vmName: vmId, datacenter: DC, scope, correlationId: "req-power", now: new Date(), drift: vmDrift(state), acpiTimeoutMs: 1000 }),
        { actor: USER, correlationId: "req-power", scope: { tenantId: "acme" } },
      );
      const [task] = await h.waitFor([taskId], succeeded, 60_000, `${operation} task`);
      return task!;
    };
    await run("stop");
    expect((await loadVm(h.store, vmId)).state).toMatchObject({ lifecycle: "stopped", desired: "stopped" });
    expect(recorded.filter((r) => r.payload.vmId === vmId && r.action === "vm-stop")).toEqual([{ host, action: "vm-stop", payload: { vmId, acpiTimeoutMs: 1000 } }]);
    await run("start");
    expect((await loadVm(h.store, vmId)).state).toMatchObject({ lifecycle: "running", desired: "running" });
    await run("reboot");
    expect(recorded.some((r) => r.payload.vmId === vmId && r.action === "vm-reboot" && r.host === host)).toBe(true);

    const inSync = await run("reconcile");
    expect(inSync.steps.map((s) => s.name)).toEqual(["in-sync"]);
    // The observer saw the VM's process gone: reconcile starts it again.
    await executeVmCommand(h.store, { type: "RecordRuntimeObservation", vmId, observed: "absent", at: new Date().toISOString() }, ctx);
    const starts = recorded.filter((r) => r.payload.vmId === vmId && r.action === "vm-start").length;
    const healed = await run("reconcile");
    expect(healed.steps.map((s) => s.name)).toEqual(["start", "started"]);
    expect(recorded.filter((r) => r.payload.vmId === vmId && r.action === "vm-start")).toHaveLength(starts + 1);
  }, 120_000);
});
