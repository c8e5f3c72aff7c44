import { execFile as execFileCb } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { QEMU_INSTALL_HINT } from "./runtime.ts";

const execFile = promisify(execFileCb);

/**
 * A hypervisor's image and disk store, `<vm-dir>/store/`:
 *
 *   images/<name>/<version>/   one imported image version (immutable): `image.qcow2`
 *                              or `image.raw`, or `kernel` + `initrd`; `manifest.json`
 *   disks/<name>-g<gen>.qcow2  one disk image generation (qcow2, backed by its image)
 *
 * and, per VM, the overlay `<vm-dir>/<vmId>/disk.qcow2` backed by a disk image.
 *
 * Everything converges: an image version is imported once (fetched into a
 * temporary directory, its SHA-256 checked, then renamed into place, so a
 * reader never sees half an import and a crash leaves only a temporary
 * directory); an existing disk image or overlay is kept (it holds data), and
 * an overlay backed by another disk image is refused rather than replaced.
 */

export type ImageSource = { readonly kind: "file"; readonly path: string } | { readonly kind: "url"; readonly url: string };

export interface ImagePart {
  readonly source: ImageSource;
  readonly digest: string;
}

/** An image version as the domain describes it (domain/maskin/vm/image.ts content), plus its name and version. */
export interface ImageRef {
  readonly name: string;
  readonly version: string;
  readonly format: "qcow2" | "raw" | "kernel+initrd";
  readonly digest: string;
  readonly source: ImageSource;
  readonly boot: null | { readonly kernel: ImagePart; readonly initrd: ImagePart; readonly cmdline: string };
}

export type ImportedImage =
  | { readonly format: "qcow2" | "raw"; readonly path: string }
  | { readonly format: "kernel+initrd"; readonly kernel: string; readonly initrd: string; readonly cmdline: string };

/** Why an import failed; `code` is what the worker reports (both are permanent: retrying fetches the same bytes). */
export class ImageImportError extends Error {
  override readonly name = "ImageImportError";
  constructor(readonly code: "image_digest_mismatch" | "image_source_unavailable", message: string) {
    super(message);
  }
}

/** An overlay exists on another disk image than the one asked for (it holds the VM's data: never replaced). */
export class DiskConflictError extends Error {
  override readonly name = "DiskConflictError";
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$/;
const GiB = 1024 ** 3;

export interface ImageStoreOptions {
  /** The store directory (`<vm-dir>/store`). */
  readonly root: string;
  readonly qemuImgBinary?: string;
  /** For URL sources (default: global fetch). */
  readonly fetch?: typeof fetch;
}

export class ImageStore {
  readonly root: string;
  private readonly qemuImg: string;
  private readonly fetchImpl: typeof fetch;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(options: ImageStoreOptions) {
    this.root = resolve(options.root);
    this.qemuImg = options.qemuImgBinary ?? "qemu-img";
    this.fetchImpl = options.fetch ?? fetch;
  }

  imageDir(name: string, version: string): string {
    if (!NAME.test(name)) throw new RangeError(`invalid image name ${JSON.stringify(name)}`);
    if (!VERSION.test(version)) throw new RangeError(`invalid image version ${JSON.stringify(version)}`);
    return join(this.root, "images", name, version);
  }

  diskPath(name: string, generation: number): string {
    if (!NAME.test(name)) throw new RangeError(`invalid disk image name ${JSON.stringify(name)}`);
    if (!Number.isInteger(generation) || generation < 0) throw new RangeError(`invalid disk generation ${generation}`);
    return join(this.root, "disks", `${name}-g${generation}.qcow2`);
  }

  /** The files of an imported version, or null when it was not imported (yet). */
  async imported(name: string, version: string): Promise<ImportedImage | null> {
    const dir = this.imageDir(name, version);
    const manifest = await readFile(join(dir, "manifest.json"), "utf8").catch(() => null);
    if (manifest === null) return null;
    const m = JSON.parse(manifest) as { format: ImageRef["format"]; cmdline?: string };
    if (m.format === "kernel+initrd") return { format: m.format, kernel: join(dir, "kernel"), initrd: join(dir, "initrd"), cmdline: m.cmdline ?? "" };
    return { format: m.format, path: join(dir, `image.${m.format}`) };
  }

  /** Imports the version unless it is there; `imported` says whether this call did it. */
  importImage(image: ImageRef, options: { signal?: AbortSignal } = {}): Promise<{ image: ImportedImage; imported: boolean }> {
    const dir = this.imageDir(image.name, image.version);
    return this.serialized(dir, async () => {
      const existing = await this.imported(image.name, image.version);
      if (existing) return { image: existing, imported: false };
      await mkdir(dirname(dir), { recursive: true });
      const work = join(dirname(dir), `.import-${image.version}-${randomBytes(4).toString("hex")}`);
      await mkdir(work);
      try {
        if (image.format === "kernel+initrd") {
          if (!image.boot) throw new ImageImportError("image_source_unavailable", `image ${image.name}@${image.version} is kernel+initrd but names no kernel and initrd`);
          await this.fetchVerified(image.boot.kernel.source, image.boot.kernel.digest, join(work, "kernel"), `${image.name}@${image.version} kernel`, options.signal);
          await this.fetchVerified(image.boot.initrd.source, image.boot.initrd.digest, join(work, "initrd"), `${image.name}@${image.version} initrd`, options.signal);
        } else {
          await this.fetchVerified(image.source, image.digest, join(work, `image.${image.format}`), `${image.name}@${image.version}`, options.signal);
        }
        const manifest = { name: image.name, version: image.version, format: image.format, digest: image.digest, cmdline: image.boot?.cmdline ?? "", importedAt: new Date().toISOString() };
        await writeFile(join(work, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
        try {
          await rename(work, dir);
        } catch (error) {
          // Another process on this host imported it meanwhile: theirs is as good (same digest).
          const theirs = await this.imported(image.name, image.version);
          if (theirs) return { image: theirs, imported: false };
          throw error;
        }
      } finally {
        await rm(work, { recursive: true, force: true });
      }
      const done = await this.imported(image.name, image.version);
      if (!done) throw new Error(`image ${image.name}@${image.version} vanished right after its import`);
      return { image: done, imported: true };
    });
  }

  /**
   * The disk image of generation `generation`, created when missing: a
   * qcow2 backed by the image file (`-F` its format) of max(sizeGiB, the
   * image's virtual size), or, for kernel+initrd or no image, a blank qcow2
   * of sizeGiB. An existing one is kept as it is (it is the disk's data).
   */
  ensureDisk(name: string, generation: number, sizeGiB: number, image: ImportedImage | null): Promise<{ path: string; created: boolean }> {
    const path = this.diskPath(name, generation);
    return this.serialized(path, async () => {
      if (await exists(path)) return { path, created: false };
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
      try {
        if (image && image.format !== "kernel+initrd") {
          const base = await this.virtualSize(image.path, image.format);
          const size = Math.max(sizeGiB * GiB, base);
          await this.qemuImgRun(["create", "-q", "-f", "qcow2", "-b", image.path, "-F", image.format, tmp, String(size)]);
        } else {
          await this.qemuImgRun(["create", "-q", "-f", "qcow2", tmp, `${sizeGiB}G`]);
        }
        await rename(tmp, path);
      } finally {
        await rm(tmp, { force: true });
      }
      return { path, created: true };
    });
  }

  /** The VM's overlay on `disk`, created when missing; an overlay on another disk image is a DiskConflictError. */
  ensureOverlay(overlay: string, disk: string): Promise<{ path: string; created: boolean }> {
    const path = resolve(overlay);
    return this.serialized(path, async () => {
      if (await exists(path)) {
        const backing = await this.backingFile(path);
        if (backing === null || resolve(backing) !== resolve(disk)) {
          throw new DiskConflictError(`the VM's overlay ${path} is on ${backing ?? "no backing file"}, not on ${disk}: destroy the VM's files first to attach another disk`);
        }
        return { path, created: false };
      }
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
      try {
        await this.qemuImgRun(["create", "-q", "-f", "qcow2", "-b", resolve(disk), "-F", "qcow2", tmp]);
        await rename(tmp, path);
      } finally {
        await rm(tmp, { force: true });
      }
      return { path, created: true };
    });
  }

  /** The disk image generations in the store (sorted by name, then generation); temporary files are not listed. */
  async listDisks(): Promise<Array<{ name: string; generation: number; path: string }>> {
    const entries = await readdir(join(this.root, "disks")).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [] as string[];
      throw error;
    });
    return entries
      .map((entry) => /^(.+)-g(\d+)\.qcow2$/.exec(entry))
      .filter((m): m is RegExpExecArray => m !== null && NAME.test(m[1]!))
      .map((m) => ({ name: m[1]!, generation: Number(m[2]), path: join(this.root, "disks", m[0]) }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.generation - b.generation));
  }

  /** Deletes a disk image generation; `removed` is false when it was not there. */
  removeDisk(name: string, generation: number): Promise<{ path: string; removed: boolean }> {
    const path = this.diskPath(name, generation);
    return this.serialized(path, async () => {
      const was = await exists(path);
      await rm(path, { force: true });
      return { path, removed: was };
    });
  }

  async backingFile(path: string): Promise<string | null> {
    const info = await this.info(path);
    return info["full-backing-filename"] ?? info["backing-filename"] ?? null;
  }

  async virtualSize(path: string, format?: string): Promise<number> {
    return (await this.info(path, format))["virtual-size"];
  }

  private async info(path: string, format?: string): Promise<{ "virtual-size": number; "backing-filename"?: string; "full-backing-filename"?: string }> {
    const { stdout } = await this.qemuImgRun(["info", "--output=json", "-U", ...(format ? ["-f", format] : []), path]);
    return JSON.parse(stdout) as { "virtual-size": number; "backing-filename"?: string; "full-backing-filename"?: string };
  }

  private async qemuImgRun(args: string[]): Promise<{ stdout: string }> {
    try {
      return await execFile(this.qemuImg, args, { maxBuffer: 1 << 20 });
    } catch (error) {
      const e = error as NodeJS.ErrnoException & { stderr?: string };
      throw new Error(`qemu-img ${args[0]} failed: ${e.code === "ENOENT" ? QEMU_INSTALL_HINT : (e.stderr ?? e.message).trim()}`);
    }
  }

  /** Copies or downloads `source` to `target`, hashing on the way; a different SHA-256 is an ImageImportError. */
  /** `signal` aborts a download (the task was cancelled, the worker stops): an AbortError, not an ImageImportError. */
  private async fetchVerified(source: ImageSource, digest: string, target: string, what: string, signal?: AbortSignal): Promise<void> {
    const hash = createHash("sha256");
    if (source.kind === "file") {
      if (!(await exists(source.path))) throw new ImageImportError("image_source_unavailable", `${what}: source file ${source.path} does not exist on this hypervisor`);
      await copyFile(source.path, target);
      for await (const chunk of createReadStream(target)) hash.update(chunk as Buffer);
    } else {
      let response: Response;
      try {
        response = await this.fetchImpl(source.url, { redirect: "follow", ...(signal ? { signal } : {}) });
      } catch (error) {
        if (signal?.aborted) throw error;
        throw new ImageImportError("image_source_unavailable", `${what}: ${source.url}: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (!response.ok || !response.body) throw new ImageImportError("image_source_unavailable", `${what}: ${source.url} answered HTTP ${response.status}`);
      const body = Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>);
      body.on("data", (chunk: Buffer) => hash.update(chunk));
      await pipeline(body, createWriteStream(target), ...(signal ? [{ signal }] : []));
    }
    const actual = hash.digest("hex");
    if (actual !== digest) throw new ImageImportError("image_digest_mismatch", `${what}: SHA-256 is ${actual}, the image version says ${digest}`);
  }

  private serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return next;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
