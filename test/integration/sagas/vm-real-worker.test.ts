import { execFile as execFileCb } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, mkdtemp, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { createServer } from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QemuRuntime } from "../../../adapters/qemu/runtime.ts";
import { HYPERVISOR_SERVICE } from "../../../adapters/workers/hypervisor/service.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { VmReadModel } from "../../../api/read/vms.ts";
import { startWorkers, type WorkersHandle } from "../../../cli/up/sagas.ts";
import { executeCapacityCommand, executeDiskImageCommand, executeImageCommand, executePortCommand, executeVmCommand, loadDiskImage, loadHypervisor, loadPortPool, loadVm } from "../../../commands/maskin/vm/index.ts";
import { executeTaskCommand } from "../../../commands/task/index.ts";
import { portsOfVm } from "../../../domain/maskin/vm/index.ts";
import { maskinVmsProjection, ProjectionRunner } from "../../../projections/index.ts";
import { diskImageRemoveSaga, vmCreateSaga, vmCreateTask, vmDeleteSaga, vmDeleteTask, type VmSagaDeps } from "../../../sagas/maskin/vm/index.ts";
import { SagaRuntime } from "../../../sagas/runtime/runtime.ts";
import { assertQemuInstalled } from "../../adapters/qemu/support/qemu.ts";
import { createSagaHarness, USER, type SagaHarness } from "./support.ts";

const execFile = promisify(execFileCb);

/**
 * One VM through the create and delete sagas with the real hypervisor worker
 * of its host (`dv worker --service hypervisor --host`): QEMU (tcg) on a
 * blank qcow2 image imported with its digest, the disk image and overlay in
 * the worker's store, the NoCloud seed, the SSH port forwarded. Delete
 * destroys the process and, the disk image being deleted meanwhile, its
 * files are removed by the disk-remove task.
 */
const DC = "osl1";
const HOST = `hvr${process.pid}`;
const scope = { tenantId: "acme", projectId: "web", environmentId: null };
const ctx = { actor: USER, correlationId: "req-real" };

async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("VM sagas with the real hypervisor worker (QEMU)", () => {
  let h: SagaHarness;
  let runtime: SagaRuntime<VmSagaDeps>;
  let runner: ProjectionRunner;
  let workers: WorkersHandle;
  let root: string;
  let runRoot: string;
  let sshPort: number;

  beforeAll(async () => {
    await assertQemuInstalled();
    root = await mkdtemp("/tmp/dvq-vs-");
    runRoot = join(root, "vm");
    h = await createSagaHarness("vmreal");
    runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: [maskinVmsProjection], retry: { initialMs: 50, maxMs: 200 } });
    await runner.start();
    runtime = new SagaRuntime<VmSagaDeps>({
      store: h.store,
      pool: h.pool,
      bus: new JetStreamSagaBus({ nc: h.nc, namespace: h.namespace }),
      sagas: [vmCreateSaga, vmDeleteSaga, diskImageRemoveSaga],
      deps: { store: h.store, vms: new VmReadModel(h.pool) },
      ackWaitMs: 60_000,
    });
    runtime.start();
    workers = await startWorkers({ nats: h.link, namespace: h.namespace, datacenter: DC, services: [HYPERVISOR_SERVICE], target: HOST, env: { DV_VM_RUN_DIR: runRoot, DV_VM_OBSERVE_INTERVAL_MS: "0" } });
    await executeCapacityCommand(h.store, { type: "RegisterHypervisor", hostId: HOST, name: HOST, datacenter: DC, capacity: { vcpus: 4, memoryMiB: 4096, diskGiB: 50 }, at: new Date().toISOString() }, ctx);
    // The machine's own ports are not the pool's to know: this host's range is one port free right now.
    sshPort = await freeTcpPort();
    await executePortCommand(h.store, { type: "ConfigureSshPortRange", hostId: HOST, range: { first: sshPort, last: sshPort }, at: new Date().toISOString() }, ctx);
    const base = join(root, "blank.qcow2");
    await execFile("qemu-img", ["create", "-q", "-f", "qcow2", base, "64M"]);
    const digest = createHash("sha256").update(await readFile(base)).digest("hex");
    await executeImageCommand(
      h.store,
      { type: "RegisterImageVersion", name: "blank", version: "1", content: { digest, format: "qcow2", source: { kind: "file", path: base }, osFamily: "none", guestInit: "none" }, at: new Date().toISOString() },
      ctx,
    );
    const vms = new VmReadModel(h.pool);
    const deadline = Date.now() + 20_000;
    while ((await vms.hypervisorsIn(DC)).length === 0) {
      if (Date.now() > deadline) throw new Error("the read model never listed the hypervisor");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }, 120_000);
  afterAll(async () => {
    await workers?.stop();
    await runtime?.stop();
    await runner?.stop();
    if (runRoot) {
      const qemu = new QemuRuntime({ runRoot });
      for (const vm of await qemu.list().catch(() => [])) await qemu.kill(vm.vmId).catch(() => undefined);
    }
    await h?.dispose();
    if (root) await rm(root, { recursive: true, force: true });
  }, 60_000);

  it("creates a running QEMU VM on its host with the disk, seed and SSH port; delete destroys it and removes the deleted disk image's files", async () => {
    const vmId = "real-1";
    const taskId = `create-${vmId}`;
    const template = { image: { name: "blank", version: "1" }, sizeGiB: 1, storageClass: "local" };
    await executeVmCommand(
      h.store,
      {
        type: "CreateVm",
        vmId,
        name: vmId,
        ...scope,
        datacenter: DC,
        resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
        image: null,
        disk: { name: "real-disk", mode: "CreateIfNotExist", template },
        nics: [{ network: "user" }],
        quota: { limits: {}, usage: { vms: 0, vcpus: 0, memoryMiB: 0 } },
        taskId,
        at: new Date().toISOString(),
      },
      ctx,
    );
    await executeTaskCommand(h.store, vmCreateTask({ taskId, vmId, vmName: vmId, datacenter: DC, scope, seed: { sshAuthorizedKeys: ["ssh-ed25519 AAAAC3 me@example"] }, correlationId: "req-real", now: new Date() }), { ...ctx, scope: { tenantId: "acme" } });
    const [created] = await h.waitFor([taskId], (t) => t.status === "succeeded" || t.status === "failed", 180_000, "the create task");
    expect(created!.status, JSON.stringify(created!.failure)).toBe("succeeded");

    const qemu = new QemuRuntime({ runRoot });
    const status = await qemu.status(vmId);
    expect(status.state).not.toBe("absent");
    const port = portsOfVm((await loadPortPool(h.store, HOST)).state, vmId)[0]!.port;
    expect(port).toBe(sshPort);
    const cmdline = (await readFile(`/proc/${status.pid}/cmdline`, "utf8")).split("\0").join(" ");
    expect(cmdline).toContain(`hostfwd=tcp:127.0.0.1:${port}-:22`);
    expect(cmdline).toContain((await loadVm(h.store, vmId)).state.vm!.nics[0]!.mac);
    expect(await stat(join(runRoot, "store", "disks", "real-disk-g1.qcow2")).then(() => true, () => false)).toBe(true);

    // The disk image is deleted while the VM holds it (terminating); the VM's deletion releases the last reference.
    await executeDiskImageCommand(h.store, { type: "DeleteDiskImage", datacenter: DC, name: "real-disk", taskId: "del-real-disk", at: new Date().toISOString() }, { ...ctx, scope: { tenantId: "acme" } });
    const deleteTask = "delete-real-1";
    await executeTaskCommand(h.store, vmDeleteTask({ taskId: deleteTask, vmId, vmName: vmId, datacenter: DC, scope, placed: true, correlationId: "req-real-del", now: new Date() }), { ...ctx, scope: { tenantId: "acme" } });
    await h.waitFor([deleteTask], (t) => t.status === "succeeded", 120_000, "the delete task");
    expect((await qemu.status(vmId)).state).toBe("absent");
    expect((await loadVm(h.store, vmId)).state.lifecycle).toBe("deleted");
    expect((await loadHypervisor(h.store, HOST)).state.reservations.has(vmId)).toBe(false);
    expect((await loadDiskImage(h.store, DC, "real-disk")).state.status).toBe("deleted");
    const removal = "disk-remove-osl1-real-disk-g1";
    const deadline = Date.now() + 60_000;
    while (!(await h.task(removal).then((t) => t.status === "succeeded", () => false))) {
      if (Date.now() > deadline) throw new Error(`the disk removal did not succeed: ${JSON.stringify(await h.task(removal).catch(() => null))}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await stat(join(runRoot, "store", "disks", "real-disk-g1.qcow2")).then(() => true, () => false)).toBe(false);
  }, 300_000);
});
