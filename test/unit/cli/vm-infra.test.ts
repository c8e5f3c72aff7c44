import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { pairDigest } from "../../../cli/commands/image.ts";
import { cleanEnv, json, localServer, runCli, tempDir } from "./support.ts";

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
const sha = (text: string) => createHash("sha256").update(text).digest("hex");
const problem = (status: number, code: string) => ({ type: `https://dataverket.dev/problems/${code}`, title: code, status, code, detail: code });

describe("dvce image", () => {
  it("import hashes a local file and sends its absolute path; 201 registered, 200 unchanged, 409 exit 3", async () => {
    const dir = await tempDir();
    cleanup.push(dir.remove);
    const file = join(dir.path, "disk.qcow2");
    await writeFile(file, "qcow2 bytes");
    let status = 201;
    const { server, env } = await api((request, response) => {
      if (status === 409) return json(response, 409, problem(409, "image_version_immutable"));
      const sent = JSON.parse(request.body);
      json(response, status, { name: sent.name, created: status === 201, version: { version: sent.version, digest: sent.digest, format: sent.format, osFamily: sent.osFamily, guestInit: sent.guestInit, source: sent.source, boot: null, registeredAt: "2026-01-01T00:00:00.000Z" } });
    });
    const args = ["image", "import", "debian", "--image-version", "12", "--file", file, "--os-family", "debian", "--guest-init", "cloud-init"];
    const first = await runCli("dvce", args, env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain("registered debian 12");
    const sent = JSON.parse(server.requests[0]!.body);
    expect(server.requests[0]).toMatchObject({ method: "POST", url: "/v1/images" });
    expect(sent).toEqual({ name: "debian", version: "12", format: "qcow2", osFamily: "debian", guestInit: "cloud-init", digest: sha("qcow2 bytes"), source: { kind: "file", path: file } });
    status = 200;
    const again = await runCli("dvce", args, env);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("exists already");
    status = 409;
    expect((await runCli("dvce", args, env)).code).toBe(3);
  });

  it("kernel+initrd hashes both parts; --url needs --digest; bad flags are usage errors before any request", async () => {
    const dir = await tempDir();
    cleanup.push(dir.remove);
    await writeFile(join(dir.path, "vmlinuz"), "kernel");
    await writeFile(join(dir.path, "initrd"), "initrd");
    const { server, env } = await api((request, response) => json(response, 201, { name: "lab", created: true, version: JSON.parse(request.body) }));
    const ok = await runCli("dvce", ["image", "import", "lab", "--image-version", "1", "--kernel", join(dir.path, "vmlinuz"), "--initrd", join(dir.path, "initrd"), "--cmdline", "console=ttyS0", "--os-family", "linux", "--guest-init", "none"], env);
    expect(ok.code, ok.stderr).toBe(0);
    const sent = JSON.parse(server.requests[0]!.body);
    expect(sent).toMatchObject({
      format: "kernel+initrd",
      digest: pairDigest(sha("kernel"), sha("initrd")),
      boot: { kernel: { digest: sha("kernel"), source: { kind: "file", path: join(dir.path, "vmlinuz") } }, initrd: { digest: sha("initrd") }, cmdline: "console=ttyS0" },
    });
    const noDigest = await runCli("dvce", ["image", "import", "x", "--image-version", "1", "--url", "https://h/x.qcow2", "--os-family", "l", "--guest-init", "none"], env);
    expect(noDigest.code).toBe(1);
    expect(noDigest.stderr).toContain("--digest");
    const both = await runCli("dvce", ["image", "import", "x", "--image-version", "1", "--url", "https://h/x", "--file", "/x", "--digest", "a".repeat(64), "--os-family", "l", "--guest-init", "none"], env);
    expect(both.code).toBe(1);
    const url = await runCli("dvce", ["image", "import", "x", "--image-version", "1", "--url", "https://h/x.raw", "--format", "raw", "--digest", "a".repeat(64), "--os-family", "l", "--guest-init", "none"], env);
    expect(url.code, url.stderr).toBe(0);
    expect(JSON.parse(server.requests.at(-1)!.body)).toMatchObject({ format: "raw", digest: "a".repeat(64), source: { kind: "url", url: "https://h/x.raw" } });
    expect(server.requests).toHaveLength(2);
  });
});

describe("dvce hypervisor and disk", () => {
  const hv = { hostId: "h-1", name: "hv-a", datacenter: "dc1", vmCount: 1, allocatable: { vcpus: 16, memoryMiB: 8192, diskGiB: 100 }, used: { vcpus: 2, memoryMiB: 1024, diskGiB: 10 }, free: { vcpus: 14, memoryMiB: 7168, diskGiB: 90 }, cordoned: false, cordonReason: null, orphans: [], reservations: [] };

  it("drains a hypervisor named by name and prints what must move", async () => {
    const { server, env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/v1/hypervisors") return json(response, 200, { items: [hv], nextCursor: null });
      if (url.pathname === "/v1/hypervisors/h-1/drain") return json(response, 200, { hostId: "h-1", drainId: "d", cordoned: true, vms: [{ vmId: "vm-1", resources: { vcpus: 2, memoryMiB: 1024, diskGiB: 10 }, groups: ["web"] }], used: hv.used });
      json(response, 404, problem(404, "route_not_found"));
    });
    const listed = await runCli("dvce", ["hypervisor", "list"], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/hv-a\s+dc1\s+1\s+16\/8192\/100\s+2\/1024\/10\s+14\/7168\/90\s+no/);
    const drained = await runCli("dvce", ["hypervisor", "drain", "hv-a", "--reason", "rma", "--wait"], env);
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.stdout).toMatch(/vm-1\s+2\s+1024\s+10\s+web/);
    expect(JSON.parse(server.requests.at(-1)!.body)).toEqual({ reason: "rma" });
    expect((await runCli("dvce", ["hypervisor", "get", "nope"], env)).code).toBe(2);
  });

  it("disk delete finds the datacenter, reports terminating; why-not-deleted lists the VMs and events", async () => {
    const { server, env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/v1/disk-images") return json(response, 200, { items: [{ datacenter: "dc1", name: "shared", status: "active", references: 2 }], nextCursor: null });
      if (request.method === "DELETE" && url.pathname === "/v1/disk-images/dc1/shared") return json(response, 202, { datacenter: "dc1", name: "shared", status: "terminating", referencedBy: ["vm-1", "vm-2"] });
      if (url.pathname === "/v1/disk-images/dc1/shared/why-not-deleted") {
        return json(response, 200, { datacenter: "dc1", name: "shared", status: "terminating", references: [{ vmId: "vm-1", vmName: "web-1", projectId: "p", mode: "CreateIfNotExist", warnings: [], addedBy: { eventId: "ev-1", position: "1.2", taskId: "t", at: "2026-01-01T00:00:00.000Z" } }] });
      }
      json(response, 404, problem(404, "disk_image_not_found"));
    });
    const deleted = await runCli("dvce", ["disk", "delete", "shared"], env);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain("terminating");
    expect(deleted.stdout).toContain("vm-1, vm-2");
    const why = await runCli("dvce", ["disk", "why-not-deleted", "shared", "--datacenter", "dc1"], env);
    expect(why.code).toBe(0);
    expect(why.stdout).toMatch(/web-1\s+vm-1\s+p\s+CreateIfNotExist\s+2026-01-01T00:00:00.000Z\s+ev-1/);
    expect(server.requests.filter((r) => r.url.startsWith("/v1/disk-images/dc1/shared")).map((r) => r.method)).toEqual(["DELETE", "GET"]);
    expect((await runCli("dvce", ["disk", "delete", "missing"], env)).code).toBe(2);
  });
});

describe("dv quota get --project", () => {
  it("shows the project's VM usage beside its limits", async () => {
    const { env } = await api((request, response) => {
      const url = new URL(request.url, "http://x");
      if (url.pathname === "/v1/tenants/t-1") return json(response, 200, { id: "t-1", name: "acme" });
      if (url.pathname === "/v1/tenants/t-1/projects/p-1") return json(response, 200, { id: "p-1", name: "web", tenantId: "t-1" });
      if (url.pathname === "/v1/tenants/t-1/projects/p-1/quota") {
        return json(response, 200, {
          scope: "project", tenantId: "t-1", projectId: "p-1", updatedAt: null,
          limits: { vcpus: 16, memoryMiB: null, vms: 4, hosts: null, networks: null, buckets: null },
          usage: { vms: 2, vcpus: 3, memoryMiB: 1536 },
        });
      }
      json(response, 404, problem(404, "route_not_found"));
    });
    const shown = await runCli("dv", ["quota", "get", "--tenant", "t-1", "--project", "p-1"], env);
    expect(shown.code, shown.stderr).toBe(0);
    const lines = shown.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^RESOURCE\s+LIMIT\s+USED$/);
    expect(lines).toEqual(expect.arrayContaining([expect.stringMatching(/^vcpus\s+16\s+3$/), expect.stringMatching(/^memory-mib\s+unlimited\s+1536$/), expect.stringMatching(/^vms\s+4\s+2$/)]));
  });
});
