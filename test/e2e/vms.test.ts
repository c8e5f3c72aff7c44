import { execFile as execFileCb } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QmpClient } from "../../adapters/qemu/qmp.ts";
import { assertQemuInstalled } from "../adapters/qemu/support/qemu.ts";
import { ensureSeedPayload, type SeedPayload } from "../adapters/qemu/support/seed-payload.ts";
import { waitUntil } from "../support/lab/server-vm.ts";
import type { TestDatabase } from "../support/postgres.ts";
import { startPlatform, type Platform } from "./platform.ts";
import { runBin, Running, type Finished } from "./support.ts";

const execFile = promisify(execFileCb);

/**
 * Issue 6's must-shows on real peers, as a user runs them: `dv up` (own
 * database and NATS namespace, no in-process workers), three hypervisors from
 * the inventory import, each with its own `dv worker --service hypervisor
 * --host <id> --vm-dir <dir>` (its own QEMU run root and image store), the
 * lab's Debian kernel + busybox payload registered as a kernel+initrd image
 * (`dvce image import`), and VMs through `dvce vm …`.
 *
 * What is checked comes from the peers: the QEMU processes in each
 * hypervisor's run root, QMP `query-status` on each VM's own socket, the
 * guest's serial console, and the VM's stream in the event store.
 */

const DC = "vmlab";
/** Per hypervisor: 1 core (×4 overcommit = 4 vCPUs) and 300 MiB: two 128 MiB VMs fit, a third does not. */
const HV_CAPACITY = { vcpus: 1, memoryMiB: 300, diskGiB: 20 };
const VM_MEMORY = 128;

interface VmView {
  vmId: string;
  name: string;
  state: string;
  desired: string;
  observed: string | null;
  drift: string | null;
  hypervisor: { hostId: string; name: string } | null;
  sshPorts: Array<{ nicIndex: number; port: number }>;
  taskId: string;
}

describe("VMs on three hypervisors of this machine, each its own worker: placement, lifecycle over QMP, drift, seed, worker kill", () => {
  let payload: SeedPayload;
  let database: TestDatabase;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let serverEnv: NodeJS.ProcessEnv;
  let api: string;
  let up: Running | undefined;
  let token: string;
  let tenantId: string;
  let projectId: string;
  let platform: Platform | undefined;
  const hypervisors: Array<{ name: string; hostId: string; vmDir: string; worker: Running }> = [];
  const retired: Running[] = [];

  const startHypervisorWorker = (hostId: string, vmDir: string) =>
    new Running("dv", ["worker", "--service", "hypervisor", "--datacenter", DC, "--host", hostId, "--vm-dir", vmDir], serverEnv);

  const cli = (bin: string, args: string[], timeoutMs = 60_000): Promise<Finished> => runBin(bin, args, env, timeoutMs);
  const ok = async (bin: string, args: string[], timeoutMs = 60_000): Promise<Finished> => {
    const result = await cli(bin, args, timeoutMs);
    if (result.code !== 0) throw new Error(`${bin} ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}\n${await everything()}`);
    return result;
  };
  const json = async <T = Record<string, unknown>>(bin: string, args: string[]): Promise<T> => JSON.parse((await ok(bin, [...args, "--output", "json"])).stdout) as T;
  const rest = async <T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${api}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : {}) as T };
  };
  const vm = async (name: string): Promise<VmView> => {
    const listed = await rest<{ items: VmView[] }>("GET", `/v1/vms?projectId=${projectId}&limit=500`);
    const found = listed.body.items.find((v) => v.name === name && v.state !== "deleted");
    if (!found) throw new Error(`no VM ${name}: ${JSON.stringify(listed.body)}`);
    return found;
  };
  const hypervisorOf = (view: VmView) => {
    const hv = hypervisors.find((h) => h.hostId === view.hypervisor?.hostId);
    if (!hv) throw new Error(`VM ${view.name} has no hypervisor of ours: ${JSON.stringify(view.hypervisor)}`);
    return hv;
  };
  /** Live QEMU processes whose command line names the VM as its guest. */
  const qemuProcesses = async (vmId: string): Promise<number[]> => {
    const { stdout } = await execFile("ps", ["-eo", "pid=,stat=,args="]);
    return stdout
      .split("\n")
      .filter((line) => line.includes("qemu-system") && line.includes(`guest=${vmId}`) && !/^\s*\d+\s+Z/.test(line))
      .map((line) => Number(line.trim().split(/\s+/)[0]));
  };
  const queryStatus = async (view: VmView): Promise<string> => {
    const client = await QmpClient.connect(join(hypervisorOf(view).vmDir, view.vmId, "qmp.sock"), { timeoutMs: 5_000 });
    try {
      const status = (await client.execute("query-status")) as { status: string };
      return status.status;
    } finally {
      client.close();
    }
  };
  const vmEvents = async (vmId: string): Promise<string[]> => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ event_type: string }>("select event_type from eventstore.events where stream_id = $1 order by stream_position", [`maskin-vm-${vmId}`]);
      return rows.map((r) => r.event_type);
    } finally {
      await client.end();
    }
  };
  const everything = async () =>
    [`--- dv up${up ? `\n${up.output.slice(-6000)}` : ": not started"}`, ...[...hypervisors.map((h) => h.worker), ...retired].map((w, i) => `--- hypervisor worker #${i + 1}\n${w.output.slice(-4000)}`)].join("\n");

  beforeAll(async () => {
    await assertQemuInstalled();
    payload = await ensureSeedPayload();
    platform = await startPlatform({ label: "vme2e", tenant: "vm-tenant", project: "vms", serverEnv: () => ({ DV_DATACENTER: DC, DV_VM_OBSERVE_INTERVAL_MS: "1000" }) });
    ({ database, dir, env, serverEnv, api, up, tenantId, projectId } = platform);
    token = (await ok("dvid", ["token"])).stdout.trim();

    const names = ["hv-1", "hv-2", "hv-3"];
    const inventory = join(dir, "inventory.yaml");
    await writeFile(
      inventory,
      [
        "datacenters:",
        `  - name: ${DC}`,
        "    racks:",
        "      - name: r01",
        "        hosts:",
        ...names.flatMap((name, i) => [
          `          - name: ${name}`,
          `            serial: VM-E2E-${i + 1}`,
          `            macs: ["52:54:00:e2:e0:0${i + 1}"]`,
          "            role: hypervisor",
          `            capacity: { vcpus: ${HV_CAPACITY.vcpus}, memoryMiB: ${HV_CAPACITY.memoryMiB}, diskGiB: ${HV_CAPACITY.diskGiB} }`,
          // Three hypervisors on one address: each its own forward ports.
          `            sshPortRange: { first: ${31000 + i * 100}, last: ${31009 + i * 100} }`,
        ]),
        "",
      ].join("\n"),
    );
    await ok("dvce", ["inventory", "import", inventory]);
    for (const name of names) {
      const host = await json<{ id: string }>("dvce", ["host", "get", name, "--datacenter", DC]);
      const vmDir = join(dir, name);
      hypervisors.push({ name, hostId: host.id, vmDir, worker: startHypervisorWorker(host.id, vmDir) });
    }
    for (const hv of hypervisors) await hv.worker.waitFor(`the ${hv.name} worker to be ready`, () => /^ready: /m.test(hv.worker.stdout), 60_000);

    // The lab's kernel + busybox payload as a kernel+initrd image; its init prints the hostname from the NoCloud seed.
    await ok("dvce", [
      "image", "import", "tiny", "--image-version", "1", "--format", "kernel+initrd",
      "--kernel", payload.kernel, "--initrd", payload.initrd, "--cmdline", `${payload.append} dv.acpi_wait=forever`,
      "--os-family", "linux", "--guest-init", "cloud-init",
    ]);
  }, 240_000);

  afterAll(async () => {
    for (const w of [...hypervisors.map((h) => h.worker), ...retired]) await w.ensureDead();
    // The workers are gone: end every QEMU they started (their pid files are in the run roots).
    for (const hv of hypervisors) {
      for (const entry of await readdir(hv.vmDir).catch(() => [] as string[])) {
        const pid = Number((await readFile(join(hv.vmDir, entry, "qemu.pid"), "utf8").catch(() => "")).trim());
        if (pid > 0) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // gone already
          }
        }
      }
    }
    await platform?.dispose();
  });

  const createArgs = (name: string, extra: string[] = []) => [
    "vm", "create", name, "--datacenter", DC, "--vcpus", "1", "--memory", String(VM_MEMORY),
    "--image", "tiny@1", "--disk", `${name}-disk`, "--disk-size", "1", ...extra,
  ];

  it("six VMs with anti-affinity spread 2/2/2 over the three hypervisors, explained; a seventh is blocked on capacity (soft) and placed when one is deleted", async () => {
    const created = await Promise.all(
      Array.from({ length: 6 }, (_, i) => cli("dvce", [...createArgs(`web-${i + 1}`, ["--anti-affinity", "web:2"]), "--wait"], 200_000)),
    );
    for (const result of created) expect(result.code, `${result.stdout}\n${result.stderr}\n${await everything()}`).toBe(0);

    const views = await Promise.all(Array.from({ length: 6 }, (_, i) => vm(`web-${i + 1}`)));
    const perHypervisor = new Map<string, string[]>();
    for (const view of views) {
      expect(view.state).toBe("running");
      perHypervisor.set(view.hypervisor!.name, [...(perHypervisor.get(view.hypervisor!.name) ?? []), view.name]);
      // One QEMU per VM, in the run root of the hypervisor it was placed on, running as QMP says.
      expect(await qemuProcesses(view.vmId)).toHaveLength(1);
      expect(await queryStatus(view)).toBe("running");
    }
    expect([...perHypervisor.values()].map((v) => v.length).sort()).toEqual([2, 2, 2]);

    // The explanation names every hypervisor not chosen and why.
    const explained = await ok("dvce", ["vm", "explain", "web-6"]);
    for (const hv of hypervisors) expect(explained.stdout).toContain(hv.name);
    const explanation = await rest<{ outcome: string; rejected: Array<{ hypervisor: string; reason: string }> }>("GET", `/v1/vms/${views[5]!.vmId}/explain`);
    expect(explanation.body.outcome).toBe("placed");
    expect(explanation.body.rejected).toHaveLength(2);
    for (const r of explanation.body.rejected) expect(["capacity", "anti_affinity", "outranked"]).toContain(r.reason);

    // A seventh VM cannot fit anywhere: blocked, soft, with the capacity reason, until capacity is freed.
    const seventh = new Running("dvce", [...createArgs("extra"), "--wait"], env);
    retired.push(seventh);
    let blocked: Record<string, unknown> | undefined;
    await waitUntil("the seventh VM's task to be blocked on capacity", async () => {
      const tasks = await rest<{ items: Array<Record<string, unknown>> }>("GET", `/v1/tasks?limit=100`);
      blocked = tasks.body.items.find((t) => t.status === "blocked" && String((t.resource as { id?: string } | undefined)?.id ?? "") !== "" && JSON.stringify(t).includes("capacity"));
      return blocked !== undefined;
    }, 120_000, everything);
    expect(JSON.stringify(blocked)).toMatch(/capacity/);
    expect(JSON.stringify(blocked)).toMatch(/soft/);
    const extraBlocked = await vm("extra");
    expect(extraBlocked.state).toBe("placing");

    await ok("dvce", ["vm", "delete", "web-1", "--wait"], 120_000);
    expect(await qemuProcesses(views[0]!.vmId)).toHaveLength(0);
    const finished = await seventh.exited;
    expect(finished.code, `${finished.stdout}\n${finished.stderr}\n${await everything()}`).toBe(0);
    const extra = await vm("extra");
    expect(extra.state).toBe("running");
    expect(extra.hypervisor!.hostId).toBe(views[0]!.hypervisor!.hostId);
  }, 420_000);

  it("a kernel+initrd VM's serial console shows the hostname it read from its NoCloud seed", async () => {
    const view = await vm("web-2");
    let text = "";
    await waitUntil("the guest to print its seed hostname", async () => {
      text = (await cli("dvce", ["vm", "console", "web-2"])).stdout;
      return text.includes("DV-SEED: hostname=web-2");
    }, 120_000, async () => `${text}\n${await everything()}`);
    expect(text).toMatch(new RegExp(`DV-SEED: hostname=web-2 instance-id=${view.vmId} label=cidata`));
  }, 180_000);

  it("QMP lifecycle: stop, start, reboot and delete change query-status and the VM's state; a QEMU killed by hand shows as drift and reconcile restarts it", async () => {
    const view = await vm("web-3");
    expect(await queryStatus(view)).toBe("running");

    await ok("dvce", ["vm", "stop", "web-3", "--wait"], 120_000);
    expect((await vm("web-3")).state).toBe("stopped");
    expect(await qemuProcesses(view.vmId)).toHaveLength(0);

    await ok("dvce", ["vm", "start", "web-3", "--wait"], 120_000);
    expect((await vm("web-3")).state).toBe("running");
    expect(await queryStatus(view)).toBe("running");

    const consoleBefore = (await cli("dvce", ["vm", "console", "web-3"])).stdout;
    await ok("dvce", ["vm", "reboot", "web-3", "--wait"], 120_000);
    expect(await queryStatus(view)).toBe("running");
    await waitUntil("the guest to boot again after the reset", async () => {
      const text = (await cli("dvce", ["vm", "console", "web-3"])).stdout;
      return text.split("userspace up").length > consoleBefore.split("userspace up").length;
    }, 120_000, everything);

    // Killed outside Maskin: the observer sees it within its interval (1 s here), the VM shows drift.
    const [pid] = await qemuProcesses(view.vmId);
    process.kill(pid!, "SIGKILL");
    let drifted: VmView | undefined;
    await waitUntil("the VM to show drift", async () => {
      drifted = await vm("web-3");
      return drifted.drift === "not_running";
    }, 30_000, async () => `${JSON.stringify(drifted)}\n${await everything()}`);
    expect(drifted!.observed).toBe("absent");

    await ok("dvce", ["vm", "reconcile", "web-3", "--wait"], 120_000);
    expect(await qemuProcesses(view.vmId)).toHaveLength(1);
    expect(await queryStatus(view)).toBe("running");
    await waitUntil("the drift to clear", async () => (await vm("web-3")).drift === null, 30_000, everything);

    await ok("dvce", ["vm", "delete", "web-3", "--wait"], 120_000);
    expect(await qemuProcesses(view.vmId)).toHaveLength(0);
    // Deleted last; the observer may still record the deleted VM's absence after it.
    const events = (await vmEvents(view.vmId)).filter((type) => type !== "VmRuntimeObserved");
    expect(events.at(-1)).toBe("VmDeleted");
  }, 420_000);

  it("killing the VM's hypervisor worker during provisioning: the VM ends running once, with one QEMU process", async () => {
    // web-1 was deleted above: its hypervisor has room for one more.
    const creating = new Running("dvce", [...createArgs("survivor"), "--wait"], env);
    retired.push(creating);
    let placed: VmView | undefined;
    await waitUntil("the VM to be placed", async () => {
      placed = await vm("survivor").catch(() => undefined);
      return placed?.hypervisor !== null && placed?.hypervisor !== undefined;
    }, 120_000, everything);
    const hv = hypervisorOf(placed!);
    // Kill the worker as soon as its QEMU for this VM exists: the start is done, its answer may not be.
    await waitUntil("the VM's QEMU to be started", async () => (await qemuProcesses(placed!.vmId)).length > 0, 120_000, everything);
    hv.worker.kill("SIGKILL");
    await hv.worker.exited;
    retired.push(hv.worker);
    hv.worker = startHypervisorWorker(hv.hostId, hv.vmDir);
    const finished = await creating.exited;
    expect(finished.code, `${finished.stdout}\n${finished.stderr}\n${await everything()}`).toBe(0);
    const view = await vm("survivor");
    expect(view.state).toBe("running");
    expect(await qemuProcesses(view.vmId)).toHaveLength(1);
    expect((await vmEvents(view.vmId)).filter((t) => t === "VmStarted")).toHaveLength(1);
  }, 300_000);
});
