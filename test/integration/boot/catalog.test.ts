import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { text } from "node:stream/consumers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { CatalogConfigError, DEFAULT_WIPE_KERNEL_ARGS, imageCatalogFromEnv, openImageFile, TALOS_KERNEL_ARGS, wipeImageFromEnv } from "../../../adapters/boot/catalog.ts";
import { bootConfigFromEnv } from "../../../adapters/boot/config.ts";
import { DirectoryTalosSecrets } from "../../../adapters/boot/talos-secrets.ts";
import { renderExitScript, renderInstallScript, renderWipeScript } from "../../../api/boot/ipxe.ts";
import { redactUrl } from "../../../api/boot/index.ts";
import { issueInstallToken, tokenDigest, tokenFromQuery } from "../../../api/boot/token.ts";
import { TEST_TALOS_SECRETS } from "./fixtures/talos-secrets.ts";

/** The image catalog and the Talos secrets directory read real files; script rendering and tokens are pure. */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dv-catalog-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function files(root: string, entries: Record<string, string>): Promise<string> {
  for (const [path, content] of Object.entries(entries)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), content);
  }
  return root;
}

describe("image catalog", () => {
  it("a directory of talos-<version>/ images: each served locally, the newest is the default, DV_BOOT_IMAGE chooses", async () => {
    const root = await files(join(dir, "versions"), {
      "talos-v1.8.4/vmlinuz-amd64": "k184",
      "talos-v1.8.4/initramfs-amd64.xz": "i184",
      "talos-v1.10.0/vmlinuz-amd64": "k1100",
      "talos-v1.10.0/initramfs-amd64.xz": "i1100",
      "README.txt": "not an image",
    });
    const catalog = (await imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: root }))!;
    expect(catalog.images().map((i) => i.name).sort()).toEqual(["talos-v1.10.0", "talos-v1.8.4"]);
    const newest = catalog.defaultImage()!;
    expect(newest).toMatchObject({ name: "talos-v1.10.0", version: "v1.10.0", installImage: "ghcr.io/siderolabs/installer:v1.10.0", kernelArgs: TALOS_KERNEL_ARGS });
    expect(newest.kernel).toMatchObject({ kind: "file", file: "vmlinuz-amd64" });
    const opened = await catalog.openAsset("talos-v1.8.4", "initramfs-amd64.xz");
    expect(opened!.size).toBe(4);
    expect(await text(opened!.stream)).toBe("i184");
    expect(await catalog.openAsset("talos-v1.8.4", "README.txt")).toBeNull();
    expect(await catalog.openAsset("talos-v1.8.4", "../README.txt")).toBeNull();
    expect(await catalog.openAsset("talos-v9.9.9", "vmlinuz-amd64")).toBeNull();

    const chosen = (await imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: root, DV_BOOT_IMAGE: "talos-v1.8.4" }))!;
    expect(chosen.defaultImage()!.name).toBe("talos-v1.8.4");
    await expect(imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: root, DV_BOOT_IMAGE: "talos-v2.0.0" })).rejects.toThrow(CatalogConfigError);
  });

  it("a flat directory (the lab's stand-in kernel + initrd) is one image named by DV_TALOS_VERSION, with the kernel arguments configured", async () => {
    // As test/support/lab/payload.ts leaves it: a `kernel-release` note beside the kernel is not the kernel.
    const root = await files(join(dir, "flat"), { "kernel-release": "6.1.0-57-amd64", vmlinuz: "k", "initrd.gz": "i" });
    const catalog = (await imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: root, DV_TALOS_VERSION: "1.9.5", DV_BOOT_KERNEL_ARGS: " console=ttyS0  panic=-1 " }))!;
    expect(catalog.defaultImage()).toMatchObject({
      name: "talos-v1.9.5",
      kernel: { kind: "file", file: "vmlinuz" },
      initramfs: { kind: "file", file: "initrd.gz" },
      kernelArgs: ["console=ttyS0", "panic=-1"],
    });
    expect((await imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: root }))!.defaultImage()!.name).toBe("talos-local");
    const plain = await files(join(dir, "plain"), { "kernel-release": "x", "kernel-amd64": "k", "initramfs-amd64.xz": "i" });
    expect((await imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: plain }))!.defaultImage()!.kernel).toMatchObject({ file: "kernel-amd64" });
  });

  it("operator asset URLs are one image; half a configuration or a missing directory is refused", async () => {
    const catalog = (await imageCatalogFromEnv({
      DV_TALOS_KERNEL_URL: "https://mirror.example/talos/v1.9.5/vmlinuz-amd64",
      DV_TALOS_INITRAMFS_URL: "https://mirror.example/talos/v1.9.5/initramfs-amd64.xz",
      DV_TALOS_VERSION: "v1.9.5",
      DV_TALOS_INSTALLER_IMAGE: "factory.talos.dev/installer/abc:v1.9.5",
    }))!;
    expect(catalog.defaultImage()).toMatchObject({
      name: "talos-v1.9.5",
      kernel: { kind: "url", url: "https://mirror.example/talos/v1.9.5/vmlinuz-amd64" },
      installImage: "factory.talos.dev/installer/abc:v1.9.5",
    });
    expect(await catalog.openAsset("talos-v1.9.5", "vmlinuz-amd64")).toBeNull();
    expect(await imageCatalogFromEnv({})).toBeNull();
    await expect(imageCatalogFromEnv({ DV_TALOS_KERNEL_URL: "https://x/k" })).rejects.toThrow(/DV_TALOS_INITRAMFS_URL/);
    await expect(imageCatalogFromEnv({ DV_TALOS_KERNEL_URL: "https://x/k", DV_TALOS_INITRAMFS_URL: "https://x/i" })).rejects.toThrow(/DV_TALOS_VERSION/);
    await expect(imageCatalogFromEnv({ DV_TALOS_KERNEL_URL: "ftp://x/k", DV_TALOS_INITRAMFS_URL: "https://x/i", DV_TALOS_VERSION: "v1.9.5" })).rejects.toThrow(/http/);
    await expect(imageCatalogFromEnv({ DV_BOOT_ASSETS_DIR: join(dir, "nope") })).rejects.toThrow(CatalogConfigError);
  });

  it("bootConfigFromEnv: nothing configured is no boot service; the base URL and install settings are checked", async () => {
    expect(await bootConfigFromEnv({})).toBeNull();
    const env = { DV_TALOS_KERNEL_URL: "https://x/k", DV_TALOS_INITRAMFS_URL: "https://x/i", DV_TALOS_VERSION: "v1.9.5" };
    const config = (await bootConfigFromEnv({ ...env, DV_BOOT_BASE_URL: "http://10.0.2.2:8080/", DV_TALOS_INSTALL_WIPE: "true", DV_TALOS_ENDPOINT: "https://{cluster}.k8s.example:6443" }))!;
    expect(config.baseUrl).toBe("http://10.0.2.2:8080");
    expect(config.talos).toMatchObject({ secrets: null, wipe: true, endpoint: "https://{cluster}.k8s.example:6443" });
    await expect(bootConfigFromEnv({ ...env, DV_BOOT_BASE_URL: "10.0.2.2:8080" })).rejects.toThrow(/DV_BOOT_BASE_URL/);
    await expect(bootConfigFromEnv({ ...env, DV_TALOS_INSTALL_WIPE: "yes" })).rejects.toThrow(/DV_TALOS_INSTALL_WIPE/);
  });
});

describe("wipe image", () => {
  it("a directory with a kernel and an initramfs, or a pair of URLs; the arguments configurable; anything else refused", async () => {
    expect(await wipeImageFromEnv({})).toBeNull();
    const root = await files(join(dir, "wipe"), { "vmlinuz": "kernel", "initrd.gz": "initrd", "notes.txt": "not an asset" });
    const local = (await wipeImageFromEnv({ DV_WIPE_ASSETS_DIR: root }))!;
    expect(local).toMatchObject({ name: "dv-wipe", kernel: { kind: "file", file: "vmlinuz" }, initramfs: { kind: "file", file: "initrd.gz" }, kernelArgs: DEFAULT_WIPE_KERNEL_ARGS });
    expect(await text((await openImageFile([local.kernel, local.initramfs], "initrd.gz"))!.stream)).toBe("initrd");
    expect(await openImageFile([local.kernel, local.initramfs], "notes.txt")).toBeNull();
    expect((await wipeImageFromEnv({ DV_WIPE_ASSETS_DIR: root, DV_WIPE_KERNEL_ARGS: " console=ttyS0  quiet " }))!.kernelArgs).toEqual(["console=ttyS0", "quiet"]);
    expect(await wipeImageFromEnv({ DV_WIPE_KERNEL_URL: "https://m/wipe/k", DV_WIPE_INITRAMFS_URL: "https://m/wipe/i" })).toMatchObject({
      kernel: { kind: "url", url: "https://m/wipe/k" },
      initramfs: { kind: "url", url: "https://m/wipe/i" },
    });
    await expect(wipeImageFromEnv({ DV_WIPE_KERNEL_URL: "https://m/wipe/k" })).rejects.toThrow(/DV_WIPE_INITRAMFS_URL/);
    await expect(wipeImageFromEnv({ DV_WIPE_KERNEL_URL: "ftp://m/k", DV_WIPE_INITRAMFS_URL: "https://m/i" })).rejects.toThrow(/http/);
    await expect(wipeImageFromEnv({ DV_WIPE_ASSETS_DIR: root, DV_WIPE_KERNEL_URL: "https://m/k", DV_WIPE_INITRAMFS_URL: "https://m/i" })).rejects.toThrow(/not both/);
    await expect(wipeImageFromEnv({ DV_WIPE_ASSETS_DIR: join(dir, "nope") })).rejects.toThrow(CatalogConfigError);
    const empty = await files(join(dir, "wipe-empty"), { "README": "no kernel here" });
    await expect(wipeImageFromEnv({ DV_WIPE_ASSETS_DIR: empty })).rejects.toThrow(/no kernel/);
    // bootConfigFromEnv carries it (null when not configured).
    const env = { DV_TALOS_KERNEL_URL: "https://x/k", DV_TALOS_INITRAMFS_URL: "https://x/i", DV_TALOS_VERSION: "v1.9.5" };
    expect((await bootConfigFromEnv(env))!.wipe).toBeNull();
    expect((await bootConfigFromEnv({ ...env, DV_WIPE_ASSETS_DIR: root }))!.wipe).toMatchObject({ name: "dv-wipe" });
  });

  it("renders the wipe script with the callback as the last argument; refuses what iPXE would expand", () => {
    const script = renderWipeScript({ hostName: "node 01", kernelUrl: "http://b/k", initramfsUrl: "http://b/i", kernelArgs: ["console=ttyS0"], callbackUrl: "http://b/boot/wipe-callback/h1?token=T" });
    expect(script).toBe("#!ipxe\necho Dataverket: wiping the disks of node_01\nkernel http://b/k console=ttyS0 dv.wipe.callback=http://b/boot/wipe-callback/h1?token=T\ninitrd http://b/i\nboot\n");
    expect(() => renderWipeScript({ hostName: "n", kernelUrl: "http://b/k", initramfsUrl: "http://b/i", kernelArgs: ["x=${evil}"], callbackUrl: "http://b/c" })).toThrow(/refusing/);
  });
});

describe("Talos secrets directory", () => {
  it("one talosctl bundle per project or environment, by tenancy ids; missing is null, invalid is an error without values", async () => {
    const root = await files(join(dir, "secrets"), {
      "t1/p1.yaml": stringify(TEST_TALOS_SECRETS),
      "t1/p1/prod.yaml": stringify({ ...TEST_TALOS_SECRETS, cluster: { ...TEST_TALOS_SECRETS.cluster, id: Buffer.alloc(32, 7).toString("base64") } }),
      "t1/bad.yaml": stringify({ ...TEST_TALOS_SECRETS, trustdinfo: { token: "leaky-value" } }),
    });
    const source = new DirectoryTalosSecrets(root);
    expect(await source.forCluster({ tenantId: "t1", projectId: "p1", environmentId: null, name: "web" })).toEqual(TEST_TALOS_SECRETS);
    expect((await source.forCluster({ tenantId: "t1", projectId: "p1", environmentId: "prod", name: "web-prod" }))!.cluster.id).toBe(Buffer.alloc(32, 7).toString("base64"));
    expect(await source.forCluster({ tenantId: "t2", projectId: "p1", environmentId: null, name: "web" })).toBeNull();
    expect(await source.forCluster({ tenantId: "..", projectId: "t1", environmentId: null, name: "x" })).toBeNull();
    const error = await source.forCluster({ tenantId: "t1", projectId: "bad", environmentId: null, name: "x" }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain("trustdinfo.token");
    expect((error as Error).message).not.toContain("leaky-value");
  });
});

describe("iPXE scripts and tokens", () => {
  it("renders kernel, initrd and boot with the per-host arguments last; exit otherwise", () => {
    const script = renderInstallScript({
      imageName: "talos-v1.9.5",
      hostName: "node 01; echo ${x}",
      kernelUrl: "http://b/k",
      initramfsUrl: "http://b/i",
      kernelArgs: ["talos.platform=metal"],
      configUrl: "http://b/boot/config/h?token=T",
      callbackUrl: "http://b/boot/callback/h?token=T",
    });
    expect(script).toBe(
      "#!ipxe\necho Dataverket: installing talos-v1.9.5 on node_01__echo___x_\nkernel http://b/k talos.platform=metal talos.config=http://b/boot/config/h?token=T dv.callback=http://b/boot/callback/h?token=T\ninitrd http://b/i\nboot\n",
    );
    expect(renderExitScript()).toBe("#!ipxe\nexit\n");
    expect(() => renderInstallScript({ imageName: "x", hostName: "h", kernelUrl: "http://b/${evil}", initramfsUrl: "http://b/i", kernelArgs: [], configUrl: "c", callbackUrl: "c" })).toThrow();
    expect(() => renderInstallScript({ imageName: "x", hostName: "h", kernelUrl: "http://b/k", initramfsUrl: "http://b/i", kernelArgs: ["a b"], configUrl: "c", callbackUrl: "c" })).toThrow();
  });

  it("tokens are 32 random bytes base64url; only the digest is kept; query values are read strictly", () => {
    const a = issueInstallToken();
    const b = issueInstallToken();
    expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.token, "base64url")).toHaveLength(32);
    expect(a.token).not.toBe(b.token);
    expect(a.digest).toBe(tokenDigest(a.token));
    expect(a.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenFromQuery(a.token)).toBe(a.token);
    expect(tokenFromQuery(`${a.token}?mac=52:54:00:12:34:01`)).toBe(a.token);
    expect(tokenFromQuery([a.token, "x"])).toBe(a.token);
    for (const bad of [undefined, "", "short", `${a.token}x`, "=".repeat(43)]) expect(tokenFromQuery(bad)).toBeNull();
    expect(redactUrl(`/boot/callback/h?token=${a.token}?mac=x&outcome=succeeded`)).toBe("/boot/callback/h?token=[redacted]&outcome=succeeded");
    expect(redactUrl(`/boot/config/h?a=1&TOKEN=${a.token}`)).toBe("/boot/config/h?a=1&TOKEN=[redacted]");
  });
});
