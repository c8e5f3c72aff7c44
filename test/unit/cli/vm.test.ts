import { afterEach, describe, expect, it } from "vitest";
import { cleanEnv, json, localServer, runCli } from "./support.ts";

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

async function api(handler: Parameters<typeof localServer>[0]) {
  const server = await localServer(handler);
  cleanup.push(server.close);
  return { server, env: cleanEnv({ DV_CONFIG: "/nonexistent/config.json", DV_API_URL: server.url, DV_TOKEN: "tok" }) };
}
const problem = (status: number, code: string, detail = code) => ({ type: `https://dataverket.dev/problems/${code}`, title: code, status, code, detail });
const vm = {
  vmId: "vm-1",
  name: "web-1",
  state: "running",
  desired: "running",
  observed: "running",
  drift: null,
  hypervisor: { hostId: "h-1", name: "hv-a" },
  sshPorts: [{ nicIndex: 0, port: 22000 }],
  resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 10 },
  nics: [{ index: 0, network: "user", mac: "52:54:00:00:00:01" }],
  warnings: [],
  failureReason: null,
};
const task = (status: string) => ({ taskId: "t-1", kind: "maskin.vm-create", status, title: "Create VM web-1", steps: [], failureReason: status === "failed" ? "step disk: disk image nope does not exist in osl1" : null, failureCode: "disk_image_not_found" });

describe("dvce vm", () => {
  it("create sends the VM with its disk template, SSH keys and anti-affinity; prints the task; quota_exceeded exits 1", async () => {
    let refuse = false;
    const { server, env } = await api((request, response) => {
      if (refuse) return json(response, 422, problem(422, "quota_exceeded", "project quota vcpus exceeded: 2 used + 2 requested > 3"));
      json(response, 202, { taskId: "t-1", kind: "maskin.vm-create", location: "/v1/tasks/t-1", vmId: "vm-1" });
    });
    const args = ["vm", "create", "web-1", "--tenant", "acme-id", "--project", "web-id", "--datacenter", "osl1", "--vcpus", "2", "--memory", "2048", "--image", "debian@12", "--anti-affinity", "web:2", "--ssh-key", "ssh-ed25519 AAAA me"];
    const created = await runCli("dvce", args, env);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/t-1\s+maskin\.vm-create\s+vm-1/);
    const post = server.requests.find((r) => r.method === "POST")!;
    expect(post.url).toBe("/v1/vms");
    expect(JSON.parse(post.body)).toEqual({
      name: "web-1",
      tenantId: "acme-id",
      projectId: "web-id",
      datacenter: "osl1",
      resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 10 },
      image: { name: "debian", version: "12" },
      disk: { name: "web-1-disk", mode: "CreateIfNotExist", template: { image: { name: "debian", version: "12" }, sizeGiB: 10, storageClass: "local" } },
      antiAffinity: { group: "web", maxPerHypervisor: 2 },
      sshAuthorizedKeys: ["ssh-ed25519 AAAA me"],
    });
    refuse = true;
    const over = await runCli("dvce", args, env);
    expect(over.code).toBe(1);
    expect(over.stderr).toContain("quota vcpus exceeded");
    // A disk image created here needs a template: refused before any request.
    const before = server.requests.length;
    const noImage = await runCli("dvce", ["vm", "create", "x", "--tenant", "a", "--project", "p", "--datacenter", "osl1"], env);
    expect(noImage.code).toBe(1);
    expect(server.requests.length).toBe(before);
  });

  it("list and get by name show state, hypervisor and SSH port; an unknown VM exits 2", async () => {
    const { env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/v1/vms") return json(response, 200, { items: [vm], nextCursor: null });
      if (url.pathname === "/v1/vms/vm-1") return json(response, 200, vm);
      json(response, 404, problem(404, "vm_not_found"));
    });
    const listed = await runCli("dvce", ["vm", "list"], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/vm-1\s+web-1\s+running\s+running\s+running\s+-\s+hv-a\s+22000\s+2\s+2048/);
    const got = await runCli("dvce", ["vm", "get", "web-1"], env);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toContain("nic 0: user 52:54:00:00:00:01");
    expect((await runCli("dvce", ["vm", "get", "nope"], env)).code).toBe(2);
  });

  it("stop --wait follows the task: a failed task exits 6", async () => {
    const { server, env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/v1/vms/vm-1") return json(response, 200, vm);
      if (request.method === "POST" && url.pathname === "/v1/vms/vm-1/stop") return json(response, 202, { taskId: "t-1", kind: "maskin.vm-stop", location: "/v1/tasks/t-1", vmId: "vm-1" });
      if (url.pathname === "/v1/tasks/t-1") return json(response, 200, task("failed"));
      json(response, 404, problem(404, "route_not_found"));
    });
    const stopped = await runCli("dvce", ["vm", "stop", "vm-1", "--acpi-timeout", "5000", "--wait"], env);
    expect(stopped.code, stopped.stderr).toBe(6);
    expect(JSON.parse(server.requests.find((r) => r.url === "/v1/vms/vm-1/stop")!.body)).toEqual({ acpiTimeoutMs: 5000 });
  });

  it("explain prints the blocked reason and every hypervisor's rejection; console prints the text from the offset", async () => {
    const { server, env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/v1/vms/vm-1") return json(response, 200, vm);
      if (url.pathname === "/v1/vms/vm-1/explain") {
        return json(response, 200, { vmId: "vm-1", outcome: "blocked", blocking: "soft", reason: "no hypervisor in osl1 fits", rejected: [{ hypervisor: "hv-a", hostId: "h-1", reason: "anti_affinity", detail: "holds 2 of group web (max 2)" }] });
      }
      if (url.pathname === "/v1/vms/vm-1/console") return json(response, 200, { vmId: "vm-1", text: "login: ", offset: Number(url.searchParams.get("offset")), nextOffset: 107, size: 107 });
      json(response, 404, problem(404, "route_not_found"));
    });
    const explained = await runCli("dvce", ["vm", "explain", "vm-1"], env);
    expect(explained.code, explained.stderr).toBe(0);
    expect(explained.stdout).toContain("blocked (soft): no hypervisor in osl1 fits");
    expect(explained.stdout).toMatch(/hv-a\s+anti_affinity\s+holds 2 of group web/);
    const console = await runCli("dvce", ["vm", "console", "vm-1", "--offset", "100"], env);
    expect(console.code, console.stderr).toBe(0);
    expect(console.stdout).toBe("login: ");
    expect(server.requests.at(-1)!.url).toContain("offset=100");
  });
});
