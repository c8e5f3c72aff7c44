import { execFile as execFileCb } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsLink } from "../../../adapters/nats/connection.ts";
import { ensureStreams } from "../../../adapters/nats/topology.ts";
import { QemuRuntime } from "../../../adapters/qemu/runtime.ts";
import { ConsoleUnavailableError, requestVmConsole } from "../../../adapters/workers/hypervisor/console-client.ts";
import { HYPERVISOR_SERVICE } from "../../../adapters/workers/hypervisor/service.ts";
import { WorkResultMessageSchema, type WorkRequestMessage, type WorkResultMessage } from "../../../adapters/workers/port.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorkers, type WorkersHandle } from "../../../cli/up/sagas.ts";
import { executeCapacityCommand, executeDiskImageCommand, executeVmCommand, loadHypervisor } from "../../../commands/maskin/vm/index.ts";
import { candidateFrom, placeVm } from "../../../domain/maskin/vm/index.ts";
import { allProjections, ProjectionRunner } from "../../../projections/index.ts";
import type { MaskinVmTables } from "../../../projections/maskin/vms.ts";
import { assertQemuInstalled, until } from "../../adapters/qemu/support/qemu.ts";
import { ensureSeedPayload, type SeedPayload } from "../../adapters/qemu/support/seed-payload.ts";
import { SHARED_NATS_URL, dropNamespace, testNamespace } from "../nats/support/nats.ts";
import { createHarness, type ProjectionHarness } from "../projections/support.ts";

const execFile = promisify(execFileCb);

/**
 * The hypervisor worker of one host (`dv worker --service hypervisor
 * --datacenter osl1 --host <hostId>`), as the VM sagas use it: work routed to
 * the host over NATS JetStream, a real QEMU (tcg), the image/disk store on
 * disk, the console over NATS request/reply, and the VM runtime observer
 * writing to a real Postgres (read back through the maskin_vms projection).
 */

const DC = "osl1";
const HOST = `hv${process.pid}`;
const namespace = testNamespace("hyph");
const context = { actor: { kind: "system", id: "hypervisor-host-test" }, correlationId: "c-hyph" } as const;

let h: ProjectionHarness;
let runner: ProjectionRunner;
let db: Kysely<MaskinVmTables>;
let link: NatsLink;
let bus: JetStreamSagaBus;
let workers: WorkersHandle;
let stopResults: () => Promise<void>;
let root: string;
let runRoot: string;
let payload: SeedPayload;
const results = new Map<string, WorkResultMessage>();
let seq = 0;

beforeAll(async () => {
  await assertQemuInstalled();
  payload = await ensureSeedPayload();
  root = await mkdtemp("/tmp/dvq-hh-");
  runRoot = join(root, "vm");
  h = await createHarness();
  db = h.db.withSchema("maskin_vms") as Kysely<MaskinVmTables>;
  runner = new ProjectionRunner({ pool: h.pool, store: h.store, projections: allProjections, retry: { initialMs: 50, maxMs: 200 } });
  await runner.start();
  await executeCapacityCommand(
    h.store,
    { type: "RegisterHypervisor", hostId: HOST, name: HOST, datacenter: DC, capacity: { vcpus: 4, memoryMiB: 8192, diskGiB: 100 }, at: new Date().toISOString() },
    context,
  );

  link = new NatsLink({ servers: SHARED_NATS_URL, name: "test-hypervisor-host", reconnectWaitMs: 250 });
  const nc = await link.ready();
  if (!nc) throw new Error("NATS link closed before connecting");
  await ensureStreams(await jetstreamManager(nc), { namespace, duplicateWindowMs: 60_000 });
  bus = new JetStreamSagaBus({ nc, namespace });
  const consumption = bus.consumeResults({ durable: "hypervisor-host-test-results", maxInFlight: 10, ackWaitMs: 5_000 }, async (delivery) => {
    const result = WorkResultMessageSchema.parse(JSON.parse(new TextDecoder().decode(delivery.data)));
    if (result.kind !== "progress") results.set(result.requestId, result);
    delivery.ack();
  });
  stopResults = () => consumption.stop();
  workers = await startWorkers({
    nats: link,
    namespace,
    datacenter: DC,
    services: [HYPERVISOR_SERVICE],
    target: HOST,
    env: { DV_VM_RUN_DIR: runRoot, DATABASE_URL: h.database.url, DV_VM_OBSERVE_INTERVAL_MS: "300" },
  });
}, 180_000);

afterAll(async () => {
  await workers?.stop();
  await stopResults?.();
  if (link) {
    const nc = await link.ready();
    if (nc) await dropNamespace(nc, namespace).catch(() => {});
    await link.close();
  }
  if (runRoot) {
    const runtime = new QemuRuntime({ runRoot });
    for (const vm of await runtime.list()) await runtime.kill(vm.vmId).catch(() => undefined);
  }
  await runner?.stop();
  await h?.dispose();
  if (root) await rm(root, { recursive: true, force: true });
}, 60_000);

async function run(action: string, body: Record<string, unknown>, target: string | undefined = HOST): Promise<WorkResultMessage> {
  const n = ++seq;
  const message: WorkRequestMessage = {
    requestId: `hh${process.pid}-${n}:step:1`,
    taskId: `hh${process.pid}-${n}`,
    step: "step",
    attempt: 1,
    service: HYPERVISOR_SERVICE,
    action,
    datacenter: DC,
    ...(target ? { target } : {}),
    payload: body,
    correlationId: `c${n}`,
    requestedAt: new Date().toISOString(),
  };
  await bus.publishWork(message);
  const deadline = Date.now() + 60_000;
  while (!results.has(message.requestId)) {
    if (Date.now() > deadline) throw new Error(`no result for ${action} ${message.requestId}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return results.get(message.requestId)!;
}

function output(result: WorkResultMessage): Record<string, any> {
  if (result.kind !== "succeeded") throw new Error(`expected success, got ${JSON.stringify(result)}`);
  return result.output;
}

async function sha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function qemuImgInfo(path: string): Promise<{ "virtual-size": number; format: string; "backing-filename"?: string; "backing-filename-format"?: string }> {
  const { stdout } = await execFile("qemu-img", ["info", "--output=json", "-U", path]);
  return JSON.parse(stdout);
}

const exists = (path: string) => stat(path).then(() => true, () => false);
const GiB = 1024 ** 3;

describe("disk-prepare", () => {
  it("imports a qcow2 image once (digest checked), makes the disk image on it and the VM's overlay on the disk; converges", async () => {
    const base = join(root, "base.qcow2");
    await execFile("qemu-img", ["create", "-q", "-f", "qcow2", base, "64M"]);
    const digest = await sha256(base);
    const image = { name: "tiny", version: "1", format: "qcow2", digest, source: { kind: "file", path: base }, boot: null };
    const body = { vmId: "vm-q", disk: { name: "data-q", generation: 1, sizeGiB: 1 }, image };

    const first = output(await run("disk-prepare", body));
    const store = join(runRoot, "store");
    expect(first).toEqual({
      vmId: "vm-q",
      overlay: join(runRoot, "vm-q", "disk.qcow2"),
      disk: join(store, "disks", "data-q-g1.qcow2"),
      image: { path: join(store, "images", "tiny", "1", "image.qcow2") },
      imported: true,
    });
    expect(await sha256(first.image.path)).toBe(digest);
    const disk = await qemuImgInfo(first.disk);
    expect(disk).toMatchObject({ format: "qcow2", "backing-filename": first.image.path, "backing-filename-format": "qcow2", "virtual-size": GiB });
    const overlay = await qemuImgInfo(first.overlay);
    expect(overlay).toMatchObject({ format: "qcow2", "backing-filename": first.disk });

    const again = output(await run("disk-prepare", body));
    expect(again).toEqual({ ...first, imported: false });

    // A base bigger than the asked size: the disk keeps the base's size.
    const big = join(root, "big.qcow2");
    await execFile("qemu-img", ["create", "-q", "-f", "qcow2", big, "2G"]);
    const bigImage = { ...image, name: "big", digest: await sha256(big), source: { kind: "file", path: big } };
    const bigDisk = output(await run("disk-prepare", { vmId: "vm-big", disk: { name: "data-big", generation: 3, sizeGiB: 1 }, image: bigImage }));
    expect((await qemuImgInfo(bigDisk.disk))["virtual-size"]).toBe(2 * GiB);

    // The overlay is the VM's data: never put on another disk image.
    const conflict = await run("disk-prepare", { ...body, disk: { name: "data-q", generation: 2, sizeGiB: 1 } });
    expect(conflict).toMatchObject({ kind: "failed", transient: false, code: "vm_disk_conflict" });
  }, 120_000);

  it("a wrong digest is a permanent image_digest_mismatch and imports nothing; a missing source is image_source_unavailable", async () => {
    const base = join(root, "other.qcow2");
    await execFile("qemu-img", ["create", "-q", "-f", "qcow2", base, "32M"]);
    const wrong = "0".repeat(64);
    const bad = await run("disk-prepare", {
      vmId: "vm-bad",
      disk: { name: "data-bad", generation: 1, sizeGiB: 1 },
      image: { name: "tiny", version: "2", format: "qcow2", digest: wrong, source: { kind: "file", path: base }, boot: null },
    });
    expect(bad).toMatchObject({ kind: "failed", transient: false, code: "image_digest_mismatch" });
    expect((bad as { message: string }).message).toContain(await sha256(base));
    expect(await exists(join(runRoot, "store", "images", "tiny", "2"))).toBe(false);
    expect((await readdir(join(runRoot, "store", "images", "tiny"))).sort()).toEqual(["1"]); // no temporary import left
    expect(await exists(join(runRoot, "store", "disks", "data-bad-g1.qcow2"))).toBe(false);

    const missing = await run("disk-prepare", {
      vmId: "vm-bad",
      disk: { name: "data-bad", generation: 1, sizeGiB: 1 },
      image: { name: "tiny", version: "3", format: "qcow2", digest: wrong, source: { kind: "file", path: join(root, "no-such.qcow2") }, boot: null },
    });
    expect(missing).toMatchObject({ kind: "failed", transient: false, code: "image_source_unavailable" });
  }, 60_000);
});

describe("a kernel+initrd VM from its logical form", () => {
  it("disk-prepare imports kernel and initrd (blank disk), seed-build, vm-start boots and the console shows the seed hostname; vm-destroy; disk-remove", async () => {
    const vmId = "vm-k";
    const hostname = `kernel-${randomBytes(3).toString("hex")}`;
    const lab = {
      name: "lab",
      version: "1",
      format: "kernel+initrd",
      digest: await sha256(payload.initrd),
      source: { kind: "file", path: payload.kernel },
      boot: {
        kernel: { source: { kind: "file", path: payload.kernel }, digest: await sha256(payload.kernel) },
        initrd: { source: { kind: "file", path: payload.initrd }, digest: await sha256(payload.initrd) },
        cmdline: payload.append,
      },
    };
    // Not prepared yet: a logical start is refused, nothing is started.
    const early = await run("vm-start", { vmId, vcpus: 1, memoryMiB: 256, boot: { kind: "image-kernel", image: { name: "lab", version: "1" } }, disk: { prepared: true } });
    expect(early).toMatchObject({ kind: "failed", transient: false, code: "vm_not_prepared" });

    const prepared = output(await run("disk-prepare", { vmId, disk: { name: "data-k", generation: 1, sizeGiB: 1 }, image: lab }));
    const imageDir = join(runRoot, "store", "images", "lab", "1");
    expect(prepared).toMatchObject({ image: { kernel: join(imageDir, "kernel"), initrd: join(imageDir, "initrd") }, imported: true });
    const blank = await qemuImgInfo(prepared.disk);
    expect(blank["backing-filename"]).toBeUndefined();
    expect(blank["virtual-size"]).toBe(GiB);

    const seeded = output(await run("seed-build", { vmId, hostname, instanceId: vmId, sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST test@dv"] }));
    expect(seeded).toEqual({ vmId, seedIso: join(runRoot, vmId, "seed.iso") });

    const start = { vmId, vcpus: 1, memoryMiB: 256, boot: { kind: "image-kernel", image: { name: "lab", version: "1" }, append: payload.append }, disk: { prepared: true }, seed: true };
    const started = output(await run("vm-start", start));
    expect(started).toMatchObject({ vmId, alreadyRunning: false, state: "running" });
    const argv = (await import("node:fs/promises")).readFile(join(runRoot, vmId, "argv.json"), "utf8").then((t) => JSON.parse(t) as string[]);
    expect(await argv).toEqual(expect.arrayContaining(["-kernel", join(imageDir, "kernel"), "-initrd", join(imageDir, "initrd"), "-append", payload.append]));
    expect(output(await run("vm-start", start))).toMatchObject({ alreadyRunning: true, pid: started.pid });

    // The console, read over NATS request/reply in chunks, as `GET /v1/vms/{id}/console --follow` does.
    const nc = (await link.ready())!;
    const seedLine = `DV-SEED: hostname=${hostname} instance-id=${vmId} label=cidata`;
    let text = "";
    let offset = 0;
    const seen = await until(async () => {
      const reply = await requestVmConsole(nc, namespace, { datacenter: DC, hostId: HOST, vmId, offset, maxBytes: 4096, timeoutMs: 2_000 });
      if ("error" in reply) throw new Error(reply.error);
      expect(reply.nextOffset).toBeGreaterThanOrEqual(offset);
      text += reply.text;
      offset = reply.nextOffset;
      return text.includes(seedLine);
    }, 90_000);
    expect(seen, `serial console:\n${text.slice(-3000)}`).toBe(true);
    expect(text).toContain("DV-SEED: user-data: #cloud-config");

    const destroyed = output(await run("vm-destroy", { vmId }));
    expect(destroyed).toMatchObject({ vmId, removed: true, wasRunning: true });
    expect(await exists(join(runRoot, vmId))).toBe(false);
    expect(output(await run("vm-status", { vmId }))).toMatchObject({ state: "absent" });
    expect(output(await run("vm-destroy", { vmId }))).toMatchObject({ removed: false, wasRunning: false });

    expect(output(await run("disk-remove", { name: "data-k", generation: 1 }))).toMatchObject({ removed: true });
    expect(await exists(prepared.disk)).toBe(false);
    expect(output(await run("disk-remove", { name: "data-k", generation: 1 }))).toMatchObject({ removed: false });
  }, 180_000);

  it("console: a VM with no log reads empty; another host's subject has no worker (ConsoleUnavailableError)", async () => {
    const nc = (await link.ready())!;
    expect(await requestVmConsole(nc, namespace, { datacenter: DC, hostId: HOST, vmId: "vm-none", timeoutMs: 2_000 })).toEqual({ text: "", nextOffset: 0, size: 0 });
    expect(await requestVmConsole(nc, namespace, { datacenter: DC, hostId: HOST, vmId: "../x", timeoutMs: 2_000 })).toMatchObject({ error: expect.stringMatching(/invalid console request/) });
    await expect(requestVmConsole(nc, namespace, { datacenter: DC, hostId: "no-such-host", vmId: "vm-none", timeoutMs: 500 })).rejects.toBeInstanceOf(ConsoleUnavailableError);
  }, 30_000);
});

describe("the VM runtime observer", () => {
  const tiny = (vmId: string) => ({ vmId, vcpus: 1, memoryMiB: 64, boot: { kind: "disk" } });

  async function runningVmOnHost(vmId: string) {
    const at = () => new Date().toISOString();
    const task = { taskId: `task-${vmId}` };
    await executeVmCommand(
      h.store,
      {
        type: "CreateVm",
        vmId,
        name: vmId,
        tenantId: "acme",
        projectId: "web",
        environmentId: null,
        datacenter: DC,
        resources: { vcpus: 1, memoryMiB: 64, diskGiB: 1 },
        image: { name: "tiny", version: "1" },
        disk: { name: `disk-${vmId}`, mode: "CreateIfNotExist", template: { image: { name: "tiny", version: "1" }, sizeGiB: 1, storageClass: "local" } },
        nics: [{ network: "user" }],
        quota: { limits: {}, usage: { vms: 0, vcpus: 0, memoryMiB: 0 } },
        ...task,
        at: at(),
      },
      context,
    );
    await executeVmCommand(h.store, { type: "StartPlacement", vmId, ...task, at: at() }, context);
    const hv = (await loadHypervisor(h.store, HOST)).state;
    const decision = placeVm({ vmId, datacenter: DC, resources: { vcpus: 1, memoryMiB: 64, diskGiB: 1 }, networks: ["user"], antiAffinity: null, spreadGroup: null }, [candidateFrom(hv, [])]);
    if (decision.outcome !== "placed") throw new Error(`not placed: ${JSON.stringify(decision)}`);
    await executeVmCommand(h.store, { type: "RecordPlacement", vmId, chosen: decision.chosen, rejected: [...decision.rejected], ...task, at: at() }, context);
    await executeVmCommand(h.store, { type: "RecordVmStarted", vmId, ...task, at: at() }, context);
  }

  const vmRow = (vmId: string) => db.selectFrom("vms").select(["lifecycle", "observed", "drift", "host_id"]).where("vm_id", "=", vmId).executeTakeFirst();
  const orphansOf = async () => (await db.selectFrom("hypervisors").select(["orphans"]).where("host_id", "=", HOST).executeTakeFirst())?.orphans ?? [];

  it("records running for a VM placed here, then absent (drift not_running) once its QEMU is killed behind Maskin's back", async () => {
    const vmId = "vm-obs";
    const started = output(await run("vm-start", tiny(vmId)));
    await runningVmOnHost(vmId);
    expect(await until(async () => (await vmRow(vmId))?.observed === "running", 20_000)).toBe(true);
    expect(await vmRow(vmId)).toMatchObject({ lifecycle: "running", host_id: HOST, drift: null });

    process.kill(Number(started.pid), "SIGKILL");
    expect(await until(async () => (await vmRow(vmId))?.observed === "absent", 20_000)).toBe(true);
    expect(await vmRow(vmId)).toMatchObject({ lifecycle: "running", observed: "absent", drift: "not_running" });
    // It observes, it never acts: the VM was not started again.
    expect(output(await run("vm-status", { vmId }))).toMatchObject({ state: "absent" });
  }, 90_000);

  it("a process left after the VM's deletion is drift process_after_delete until it is gone (then absent)", async () => {
    const vmId = "vm-del";
    output(await run("vm-start", tiny(vmId)));
    await runningVmOnHost(vmId);
    expect(await until(async () => (await vmRow(vmId))?.observed === "running", 20_000)).toBe(true);
    const task = { taskId: `del-${vmId}` };
    await executeVmCommand(h.store, { type: "DeleteVm", vmId, ...task, at: new Date().toISOString() }, context);
    await executeVmCommand(h.store, { type: "CompleteVmDeletion", vmId, ...task, at: new Date().toISOString() }, context);
    expect(await until(async () => (await vmRow(vmId))?.lifecycle === "deleted", 20_000)).toBe(true);
    expect(await vmRow(vmId)).toMatchObject({ observed: "running", drift: "process_after_delete" });

    expect(output(await run("vm-destroy", { vmId }))).toMatchObject({ wasRunning: true, removed: true });
    expect(await until(async () => (await vmRow(vmId))?.observed === "absent", 20_000)).toBe(true);
    expect(await vmRow(vmId)).toMatchObject({ lifecycle: "deleted", drift: null });
  }, 90_000);

  it("records QEMU processes with no VM record as the hypervisor's orphans, and their going away", async () => {
    const vmId = "vm-orphan";
    output(await run("vm-start", tiny(vmId)));
    expect(await until(async () => (await orphansOf()).includes(vmId), 20_000), JSON.stringify(await orphansOf())).toBe(true);
    // A VM with a record on this host is not an orphan.
    expect(await orphansOf()).not.toContain("vm-obs");
    const orphanEvents = async () => (await h.store.readStream(`maskin-hv-${HOST}`, { from: 0, limit: 1000, direction: "forward" })).filter((e) => e.type === "HypervisorOrphansObserved").length;
    const before = await orphanEvents();
    await new Promise((r) => setTimeout(r, 1_000)); // a few rounds with the same set record nothing new
    expect(await orphanEvents()).toBe(before);

    expect(output(await run("vm-destroy", { vmId }))).toMatchObject({ wasRunning: true });
    expect(await until(async () => !(await orphansOf()).includes(vmId), 20_000)).toBe(true);
  }, 90_000);
});

describe("the observer's disk collection", () => {
  it("removes this host's copies of deleted disk image generations (and superseded ones), keeps live ones and those the read model does not know yet", async () => {
    const disks = join(runRoot, "store", "disks");
    await mkdir(disks, { recursive: true });
    const at = () => new Date().toISOString();
    const template = { image: { name: "tiny", version: "1" }, sizeGiB: 1, storageClass: "local" };
    // gc-old: created for a VM, released and deleted (generation 1), then created again (generation 2).
    await executeDiskImageCommand(h.store, { type: "ReferenceDiskImage", datacenter: DC, name: "gc-old", vmId: "gc-vm-1", mode: "CreateIfNotExist", template, taskId: "t-gc-1", at: at() }, context);
    await executeDiskImageCommand(h.store, { type: "ReleaseDiskImageReference", datacenter: DC, name: "gc-old", vmId: "gc-vm-1", taskId: "t-gc-2", at: at() }, context);
    await executeDiskImageCommand(h.store, { type: "DeleteDiskImage", datacenter: DC, name: "gc-old", taskId: "t-gc-3", at: at() }, context);
    await executeDiskImageCommand(h.store, { type: "ReferenceDiskImage", datacenter: DC, name: "gc-old", vmId: "gc-vm-2", mode: "CreateIfNotExist", template, taskId: "t-gc-4", at: at() }, context);
    // gc-gone: deleted, never created again; gc-live: referenced.
    await executeDiskImageCommand(h.store, { type: "ReferenceDiskImage", datacenter: DC, name: "gc-gone", vmId: "gc-vm-3", mode: "CreateIfNotExist", template, taskId: "t-gc-5", at: at() }, context);
    await executeDiskImageCommand(h.store, { type: "ReleaseDiskImageReference", datacenter: DC, name: "gc-gone", vmId: "gc-vm-3", taskId: "t-gc-6", at: at() }, context);
    await executeDiskImageCommand(h.store, { type: "DeleteDiskImage", datacenter: DC, name: "gc-gone", taskId: "t-gc-7", at: at() }, context);
    await executeDiskImageCommand(h.store, { type: "ReferenceDiskImage", datacenter: DC, name: "gc-live", vmId: "gc-vm-4", mode: "CreateIfNotExist", template, taskId: "t-gc-8", at: at() }, context);
    for (const file of ["gc-old-g1", "gc-old-g2", "gc-gone-g1", "gc-live-g1", "gc-unknown-g1"]) await writeFile(join(disks, `${file}.qcow2`), "disk");

    const present = async () => (await readdir(disks)).filter((f) => f.startsWith("gc-")).sort();
    const collected = await until(async () => {
      const files = await present();
      return !files.includes("gc-old-g1.qcow2") && !files.includes("gc-gone-g1.qcow2");
    }, 20_000);
    expect(collected, `still there: ${(await present()).join(", ")}`).toBe(true);
    expect(await present()).toEqual(["gc-live-g1.qcow2", "gc-old-g2.qcow2", "gc-unknown-g1.qcow2"]);
  }, 60_000);
});
