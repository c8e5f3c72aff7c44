import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsLink } from "../../../adapters/nats/connection.ts";
import { ensureStreams } from "../../../adapters/nats/topology.ts";
import { QemuRuntime } from "../../../adapters/qemu/runtime.ts";
import { HYPERVISOR_SERVICE, hypervisorRunDir } from "../../../adapters/workers/hypervisor/service.ts";
import { WorkResultMessageSchema, type WorkRequestMessage, type WorkResultMessage } from "../../../adapters/workers/port.ts";
import { JetStreamSagaBus } from "../../../adapters/workers/saga-bus.ts";
import { startWorkers, type WorkersHandle } from "../../../cli/up/sagas.ts";
import { assertQemuInstalled, until } from "../../adapters/qemu/support/qemu.ts";
import { SHARED_NATS_URL, dropNamespace, testNamespace } from "../nats/support/nats.ts";

/**
 * The registered `hypervisor` service as `dv worker --service hypervisor
 * --datacenter osl1` runs it: work requests over NATS JetStream, a real QEMU
 * (tcg) behind it. The VM is an idle SeaBIOS with no disk and 64 MiB.
 */

let link: NatsLink;
let bus: JetStreamSagaBus;
let workers: WorkersHandle;
let root: string;
let runRoot: string;
const namespace = testNamespace("hypw");
const results = new Map<string, WorkResultMessage>();
let stopResults: () => Promise<void>;
let seq = 0;
const vmId = `vm-hw-${process.pid}`;

beforeAll(async () => {
  await assertQemuInstalled();
  root = await mkdtemp(join(tmpdir(), "dvq-hw-"));
  runRoot = join(root, "run");
  link = new NatsLink({ servers: SHARED_NATS_URL, name: "test-hypervisor-worker", reconnectWaitMs: 250 });
  const nc = await link.ready();
  if (!nc) throw new Error("NATS link closed before connecting");
  await ensureStreams(await jetstreamManager(nc), { namespace, duplicateWindowMs: 60_000 });
  bus = new JetStreamSagaBus({ nc, namespace });
  const consumption = bus.consumeResults({ durable: "hypervisor-test-results", maxInFlight: 10, ackWaitMs: 5_000 }, async (delivery) => {
    const result = WorkResultMessageSchema.parse(JSON.parse(new TextDecoder().decode(delivery.data)));
    if (result.kind !== "progress") results.set(result.requestId, result);
    delivery.ack();
  });
  stopResults = () => consumption.stop();
  workers = await startWorkers({ nats: link, namespace, datacenter: "osl1", services: [HYPERVISOR_SERVICE], env: { DV_VM_RUN_DIR: runRoot } });
}, 60_000);

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
  if (root) await rm(root, { recursive: true, force: true });
}, 60_000);

function request(action: string, payload: Record<string, unknown>): WorkRequestMessage {
  const n = ++seq;
  return {
    requestId: `hw${process.pid}-${n}:step:1`,
    taskId: `hw${process.pid}-${n}`,
    step: "step",
    attempt: 1,
    service: HYPERVISOR_SERVICE,
    action,
    datacenter: "osl1",
    payload,
    correlationId: `c${n}`,
    requestedAt: new Date().toISOString(),
  };
}

async function run(action: string, payload: Record<string, unknown>): Promise<WorkResultMessage> {
  const message = request(action, payload);
  await bus.publishWork(message);
  const deadline = Date.now() + 45_000;
  while (!results.has(message.requestId)) {
    if (Date.now() > deadline) throw new Error(`no result for ${message.requestId}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return results.get(message.requestId)!;
}

function output(result: WorkResultMessage): Record<string, unknown> {
  if (result.kind !== "succeeded") throw new Error(`expected success, got ${JSON.stringify(result)}`);
  return result.output;
}

const tiny = { vmId, vcpus: 1, memoryMiB: 64, boot: { kind: "disk" } };

describe("the hypervisor worker service over NATS with real QEMU", () => {
  it("run root: DV_VM_RUN_DIR, else <data dir>/vm", () => {
    expect(hypervisorRunDir({ DV_VM_RUN_DIR: "/tmp/x" })).toBe("/tmp/x");
    expect(hypervisorRunDir({ DV_DATA_DIR: "/srv/dv" })).toBe("/srv/dv/vm");
    expect(hypervisorRunDir({}, 0)).toBe("/var/lib/dv/vm");
  });

  it("vm-start → running; again → alreadyRunning; status running; stop → absent; status absent", async () => {
    const started = await run("vm-start", tiny);
    expect(started).toMatchObject({ kind: "succeeded", output: { vmId, alreadyRunning: false, state: "running" } });
    const pid = Number(output(started).pid);
    expect(pid).toBeGreaterThan(0);

    const again = await run("vm-start", tiny);
    expect(again).toMatchObject({ kind: "succeeded", output: { vmId, alreadyRunning: true, pid } });

    expect(await run("vm-status", { vmId })).toMatchObject({ kind: "succeeded", output: { vmId, state: "running", pid } });

    // SeaBIOS idle ignores the ACPI button: a short wait, then quit.
    const stopped = await run("vm-stop", { vmId, acpiTimeoutMs: 500 });
    expect(stopped).toMatchObject({ kind: "succeeded", output: { vmId, wasRunning: true, state: "absent" } });
    expect(["quit", "kill"]).toContain(output(stopped).method);
    expect(await run("vm-status", { vmId })).toMatchObject({ kind: "succeeded", output: { vmId, state: "absent", pid: null } });

    // Stopping an absent VM converges; rebooting one is vm_not_found.
    expect(await run("vm-stop", { vmId })).toMatchObject({ kind: "succeeded", output: { method: "absent", wasRunning: false } });
    expect(await run("vm-reboot", { vmId })).toMatchObject({ kind: "failed", transient: false, code: "vm_not_found" });
  }, 120_000);

  it("after kill -9 of the QEMU process, status is absent", async () => {
    const started = await run("vm-start", tiny);
    expect(started).toMatchObject({ kind: "succeeded", output: { alreadyRunning: false } });
    const pid = Number(output(started).pid);
    expect(await run("vm-reboot", { vmId })).toMatchObject({ kind: "succeeded", output: { rebooted: true, state: "running", pid } });
    process.kill(pid, "SIGKILL");
    // Bounded wait: the kernel may take a moment to end the process.
    expect(await until(() => !isLiveProcess(pid), 5_000)).toBe(true);
    expect(await run("vm-status", { vmId })).toMatchObject({ kind: "succeeded", output: { vmId, state: "absent", pid: null } });
  }, 120_000);

  it("QEMU refusing to start is a permanent vm_start_failed with its stderr; a bad payload is invalid_payload", async () => {
    const failed = await run("vm-start", { ...tiny, vmId: `${vmId}-bad`, nics: [{ model: "no-such-nic-model" }] });
    expect(failed).toMatchObject({ kind: "failed", transient: false, code: "vm_start_failed" });
    expect((failed as { message: string }).message).toMatch(/no-such-nic-model/);
    expect(await run("vm-start", { ...tiny, vmId: "../etc" })).toMatchObject({ kind: "failed", transient: false, code: "invalid_payload" });
  }, 60_000);
});

function isLiveProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill -0: read its state.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}
