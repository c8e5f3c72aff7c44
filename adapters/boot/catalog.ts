import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { WIPE_IMAGE_NAME, type AssetSource, type BootImage, type ImageCatalog, type OpenedAsset, type WipeImage } from "./port.ts";

/**
 * The boot image catalog, from configuration. Two ways, combinable:
 *
 * - **Asset URLs** (`DV_TALOS_KERNEL_URL`, `DV_TALOS_INITRAMFS_URL`,
 *   `DV_TALOS_VERSION`): the operator mirrors Talos's `vmlinuz-amd64` and
 *   `initramfs-amd64.xz` somewhere the machines can reach; iPXE fetches them
 *   there. One image, `talos-<version>`.
 * - **A local directory** (`DV_BOOT_ASSETS_DIR`): one subdirectory per image,
 *   named `talos-<version>` (e.g. `talos-v1.9.5/`), holding a kernel
 *   (`vmlinuz*`, `bzImage*`, or `kernel[-<arch>][.<ext>]`) and an initramfs
 *   (`initramfs*` or `initrd*`).
 *   The boot service serves them itself at `/boot/assets/<image>/<file>`.
 *   A directory holding a kernel and an initramfs directly is one image,
 *   `talos-<DV_TALOS_VERSION or "local">`.
 *
 * `DV_BOOT_IMAGE` names the image hosts get (default: the newest version).
 * `DV_BOOT_KERNEL_ARGS` (space-separated) replaces the default Talos kernel
 * arguments, e.g. `console=ttyS0 panic=-1` for the lab's stand-in installer
 * (the lab's Debian kernel + busybox initrd, configured the same way as Talos).
 * `DV_TALOS_INSTALLER_IMAGE` overrides `ghcr.io/siderolabs/installer:<version>`.
 */

/** What Talos's own PXE docs boot the kernel with (talos.platform=metal and the KSPP flags Talos enforces). */
export const TALOS_KERNEL_ARGS: readonly string[] = ["talos.platform=metal", "console=tty0", "init_on_alloc=1", "slab_nomerge", "pti=on", "printk.devkmsg=on"];

const VERSION = /^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/;
const IMAGE_NAME = /^talos-[0-9A-Za-z.+-]+$/;

export class CatalogConfigError extends Error {
  override readonly name = "CatalogConfigError";
}

export class StaticImageCatalog implements ImageCatalog {
  private readonly byName: ReadonlyMap<string, BootImage>;
  private readonly chosen: BootImage | null;

  constructor(images: readonly BootImage[], defaultName?: string) {
    const byName = new Map<string, BootImage>();
    for (const image of images) {
      if (!IMAGE_NAME.test(image.name)) throw new CatalogConfigError(`boot image name ${JSON.stringify(image.name)} is not talos-<version>`);
      if (byName.has(image.name)) throw new CatalogConfigError(`boot image ${image.name} is configured twice`);
      byName.set(image.name, image);
    }
    this.byName = byName;
    if (defaultName !== undefined) {
      const chosen = byName.get(defaultName);
      if (!chosen) throw new CatalogConfigError(`DV_BOOT_IMAGE=${defaultName} is not in the catalog (${[...byName.keys()].join(", ") || "empty"})`);
      this.chosen = chosen;
    } else {
      this.chosen = [...byName.values()].sort((a, b) => compareVersions(b.version, a.version))[0] ?? null;
    }
  }

  defaultImage(): BootImage | null {
    return this.chosen;
  }

  image(name: string): BootImage | null {
    return this.byName.get(name) ?? null;
  }

  images(): readonly BootImage[] {
    return [...this.byName.values()];
  }

  async openAsset(imageName: string, file: string): Promise<OpenedAsset | null> {
    const image = this.byName.get(imageName);
    if (!image) return null;
    return openImageFile([image.kernel, image.initramfs], file);
  }
}

/** The local file named `file` among an image's sources (never a path from the request); null when there is none. */
export async function openImageFile(sources: readonly AssetSource[], file: string): Promise<OpenedAsset | null> {
  const source = sources.find((s): s is Extract<AssetSource, { kind: "file" }> => s.kind === "file" && s.file === file);
  if (!source) return null;
  try {
    const info = await stat(source.path);
    if (!info.isFile()) return null;
    return { stream: createReadStream(source.path), size: info.size };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** What a wipe image boots with when DV_WIPE_KERNEL_ARGS does not say (a serial console too: a wipe is watched there). */
export const DEFAULT_WIPE_KERNEL_ARGS: readonly string[] = ["console=tty0", "console=ttyS0,115200"];

/**
 * The wipe image from the environment; null when none is configured (then
 * a release's wipe netboot gets `exit` and the release waits until its
 * deadline: configure one wherever hosts are released).
 *
 * - `DV_WIPE_ASSETS_DIR`: a directory holding a kernel (`vmlinuz*`,
 *   `bzImage*`, `kernel[-<arch>]`) and an initramfs (`initramfs*`,
 *   `initrd*`), served at /boot/assets/dv-wipe/<file>; or
 * - `DV_WIPE_KERNEL_URL` + `DV_WIPE_INITRAMFS_URL`: fetched there by iPXE.
 * - `DV_WIPE_KERNEL_ARGS` (space-separated) replaces DEFAULT_WIPE_KERNEL_ARGS.
 */
export async function wipeImageFromEnv(env: NodeJS.ProcessEnv): Promise<WipeImage | null> {
  const dir = env.DV_WIPE_ASSETS_DIR?.trim() || null;
  const kernelUrl = env.DV_WIPE_KERNEL_URL?.trim() || null;
  const initramfsUrl = env.DV_WIPE_INITRAMFS_URL?.trim() || null;
  if (!dir && !kernelUrl && !initramfsUrl) return null;
  const kernelArgs = env.DV_WIPE_KERNEL_ARGS !== undefined ? env.DV_WIPE_KERNEL_ARGS.split(/\s+/).filter(Boolean) : DEFAULT_WIPE_KERNEL_ARGS;
  if (dir && (kernelUrl || initramfsUrl)) throw new CatalogConfigError("set either DV_WIPE_ASSETS_DIR or DV_WIPE_KERNEL_URL + DV_WIPE_INITRAMFS_URL, not both");
  if (!dir) {
    if (!kernelUrl || !initramfsUrl) throw new CatalogConfigError("set both DV_WIPE_KERNEL_URL and DV_WIPE_INITRAMFS_URL");
    for (const [name, url] of [["DV_WIPE_KERNEL_URL", kernelUrl], ["DV_WIPE_INITRAMFS_URL", initramfsUrl]] as const) {
      if (!/^https?:\/\/\S+$/.test(url)) throw new CatalogConfigError(`${name} must be an http(s) URL`);
    }
    return { name: WIPE_IMAGE_NAME, kernel: { kind: "url", url: kernelUrl }, initramfs: { kind: "url", url: initramfsUrl }, kernelArgs };
  }
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  } catch (error) {
    throw new CatalogConfigError(`DV_WIPE_ASSETS_DIR=${dir} cannot be read: ${(error as Error).message}`);
  }
  const files = pickFiles(names);
  if (!files) throw new CatalogConfigError(`DV_WIPE_ASSETS_DIR=${dir} holds no kernel (vmlinuz*, bzImage*, kernel[-<arch>]) and initramfs (initramfs*, initrd*)`);
  return { name: WIPE_IMAGE_NAME, kernel: fileSource(dir, files.kernel), initramfs: fileSource(dir, files.initramfs), kernelArgs };
}

/** Reads DV_BOOT_ASSETS_DIR / DV_TALOS_* from the environment; null when neither is set (no boot service). */
export async function imageCatalogFromEnv(env: NodeJS.ProcessEnv): Promise<StaticImageCatalog | null> {
  const dir = env.DV_BOOT_ASSETS_DIR?.trim() || null;
  const kernelUrl = env.DV_TALOS_KERNEL_URL?.trim() || null;
  const initramfsUrl = env.DV_TALOS_INITRAMFS_URL?.trim() || null;
  if (!dir && !kernelUrl && !initramfsUrl) return null;
  const version = env.DV_TALOS_VERSION?.trim() || null;
  const options = {
    kernelArgs: env.DV_BOOT_KERNEL_ARGS !== undefined ? env.DV_BOOT_KERNEL_ARGS.split(/\s+/).filter(Boolean) : TALOS_KERNEL_ARGS,
    installerImage: env.DV_TALOS_INSTALLER_IMAGE?.trim() || null,
  };

  const images: BootImage[] = [];
  if (kernelUrl || initramfsUrl) {
    if (!kernelUrl || !initramfsUrl) throw new CatalogConfigError("set both DV_TALOS_KERNEL_URL and DV_TALOS_INITRAMFS_URL");
    if (!version) throw new CatalogConfigError("DV_TALOS_VERSION (e.g. v1.9.5) names the release DV_TALOS_KERNEL_URL points at");
    for (const [name, url] of [["DV_TALOS_KERNEL_URL", kernelUrl], ["DV_TALOS_INITRAMFS_URL", initramfsUrl]] as const) {
      if (!/^https?:\/\/\S+$/.test(url)) throw new CatalogConfigError(`${name} must be an http(s) URL`);
    }
    images.push(imageOf(version, { kind: "url", url: kernelUrl }, { kind: "url", url: initramfsUrl }, options));
  }
  if (dir) images.push(...(await imagesInDirectory(dir, version, options)));
  const chosen = env.DV_BOOT_IMAGE?.trim() || undefined;
  return new StaticImageCatalog(images, chosen);
}

interface ImageOptions {
  readonly kernelArgs: readonly string[];
  readonly installerImage: string | null;
}

export function imageOf(version: string, kernel: AssetSource, initramfs: AssetSource, options: Partial<ImageOptions> = {}): BootImage {
  const v = version.startsWith("v") || !/^\d/.test(version) ? version : `v${version}`;
  if (v !== "local" && !VERSION.test(v)) throw new CatalogConfigError(`${JSON.stringify(version)} is not a release version like v1.9.5`);
  return {
    name: `talos-${v}`,
    version: v,
    kernel,
    initramfs,
    kernelArgs: options.kernelArgs ?? TALOS_KERNEL_ARGS,
    installImage: options.installerImage ?? `ghcr.io/siderolabs/installer:${v === "local" ? "latest" : v}`,
  };
}

async function imagesInDirectory(dir: string, version: string | null, options: ImageOptions): Promise<BootImage[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw new CatalogConfigError(`DV_BOOT_ASSETS_DIR=${dir} cannot be read: ${(error as Error).message}`);
  }
  const flat = pickFiles(entries.filter((e) => e.isFile()).map((e) => e.name));
  if (flat) return [imageOf(version ?? "local", fileSource(dir, flat.kernel), fileSource(dir, flat.initramfs), options)];

  const images: BootImage[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || !entry.name.startsWith("talos-")) continue;
    const sub = join(dir, entry.name);
    const files = pickFiles((await readdir(sub, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name));
    if (!files) throw new CatalogConfigError(`${sub} holds no kernel (vmlinuz*, bzImage*, kernel[-<arch>]) and initramfs (initramfs*, initrd*)`);
    images.push(imageOf(entry.name.slice("talos-".length), fileSource(sub, files.kernel), fileSource(sub, files.initramfs), options));
  }
  if (images.length === 0) throw new CatalogConfigError(`DV_BOOT_ASSETS_DIR=${dir} holds no talos-<version>/ directory and no kernel + initramfs`);
  return images;
}

const SAFE_FILE = /^[A-Za-z0-9._-]+$/;

function pickFiles(names: readonly string[]): { kernel: string; initramfs: string } | null {
  const sorted = names.filter((n) => SAFE_FILE.test(n)).sort();
  // vmlinuz*/bzImage* first; `kernel`, `kernel-<arch>`, `kernel.<ext>` only then (never e.g. a `kernel-release` note beside them).
  const kernel = sorted.find((n) => /^(vmlinuz|bzImage)/.test(n)) ?? sorted.find((n) => /^kernel(-(amd64|arm64|x86_64|aarch64))?(\.[A-Za-z0-9]+)?$/.test(n));
  const initramfs = sorted.find((n) => /^(initramfs|initrd)/.test(n));
  return kernel && initramfs ? { kernel, initramfs } : null;
}

function fileSource(dir: string, file: string): AssetSource {
  return { kind: "file", path: join(dir, file), file };
}

/** Compares v1.9.5-style versions numerically ("local" sorts lowest). */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => (/^v?(\d+)\.(\d+)\.(\d+)/.exec(v)?.slice(1).map(Number)) ?? [-1, -1, -1];
  const [pa, pb] = [parts(a), parts(b)];
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return a < b ? -1 : a > b ? 1 : 0;
}
