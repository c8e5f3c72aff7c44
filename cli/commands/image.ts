import type { Command } from "commander";
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { resolve } from "node:path";
import { CliError, ExitCode, usageError } from "../core/errors.ts";
import { render, type Column } from "../core/output.ts";
import { listAll, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";

/**
 * dvce image import NAME --image-version V ... | list. Importing registers an immutable image version
 * (POST /v1/images): the same content again changes nothing (exit 0, "exists
 * already"); other content for an existing version is refused (409
 * image_version_immutable, exit 3): new content is a new version.
 *
 * Local files (--file, --kernel, --initrd) are hashed here (sha256) and sent
 * as absolute paths: the image store reads them on the hypervisors' side, so
 * the path must be the same there (one machine, or a shared mount). A --url
 * needs --digest (the CLI does not download it). For kernel+initrd the
 * version's digest is the sha256 of "<kernel digest>\n<initrd digest>\n"
 * (the pair's identity) and the kernel is the version's source.
 * Registration is synchronous: `--wait` is accepted and changes nothing.
 */

const SHA256 = /^[0-9a-f]{64}$/;

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (error) {
    throw new CliError(ExitCode.usage, `cannot read ${path}: ${(error as Error).message}`);
  }
  return hash.digest("hex");
}

/** The digest of a kernel+initrd pair from its parts' digests. */
export function pairDigest(kernel: string, initrd: string): string {
  return createHash("sha256").update(`${kernel}\n${initrd}\n`).digest("hex");
}

interface ImportOptions {
  imageVersion: string;
  file?: string;
  url?: string;
  digest?: string;
  format?: string;
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  osFamily: string;
  guestInit: string;
  wait?: boolean;
}

/** The POST /v1/images body for the flags (reads and hashes local files). */
export async function imageImportBody(name: string, options: ImportOptions): Promise<Record<string, unknown>> {
  const format = options.format ?? (options.kernel || options.initrd ? "kernel+initrd" : "qcow2");
  if (!["qcow2", "raw", "kernel+initrd"].includes(format)) throw usageError(`--format must be qcow2, raw or kernel+initrd, not ${format}`);
  if (!["cloud-init", "talos", "none"].includes(options.guestInit)) throw usageError(`--guest-init must be cloud-init, talos or none, not ${options.guestInit}`);
  if (options.digest !== undefined && !SHA256.test(options.digest)) throw usageError("--digest must be a sha256 in lowercase hex (64 characters)");
  const base = { name, version: options.imageVersion, format, osFamily: options.osFamily, guestInit: options.guestInit };
  if (format === "kernel+initrd") {
    if (!options.kernel || !options.initrd) throw usageError("kernel+initrd needs --kernel FILE and --initrd FILE");
    if (options.file || options.url) throw usageError("kernel+initrd takes --kernel and --initrd, not --file or --url");
    const kernelPath = resolve(options.kernel);
    const initrdPath = resolve(options.initrd);
    const [kernelDigest, initrdDigest] = [await sha256File(kernelPath), await sha256File(initrdPath)];
    return {
      ...base,
      digest: pairDigest(kernelDigest, initrdDigest),
      source: { kind: "file", path: kernelPath },
      boot: {
        kernel: { source: { kind: "file", path: kernelPath }, digest: kernelDigest },
        initrd: { source: { kind: "file", path: initrdPath }, digest: initrdDigest },
        cmdline: options.cmdline ?? "",
      },
    };
  }
  if (options.kernel || options.initrd || options.cmdline !== undefined) throw usageError("--kernel, --initrd and --cmdline are for --format kernel+initrd");
  if ((options.file === undefined) === (options.url === undefined)) throw usageError("give exactly one of --file PATH or --url URL");
  if (options.url !== undefined) {
    if (!options.digest) throw usageError("--url needs --digest SHA256 (the CLI does not download the image)");
    return { ...base, digest: options.digest, source: { kind: "url", url: options.url } };
  }
  const path = resolve(options.file!);
  const digest = await sha256File(path);
  if (options.digest !== undefined && options.digest !== digest) throw usageError(`${path} has sha256 ${digest}, not the --digest given`);
  return { ...base, digest, source: { kind: "file", path } };
}

const VERSION_COLUMNS: Column<Resource>[] = [
  { header: "image", value: (r) => r.name },
  { header: "version", value: (r) => r.version },
  { header: "format", value: (r) => r.format },
  { header: "os", value: (r) => r.osFamily },
  { header: "guest-init", value: (r) => r.guestInit },
  { header: "digest", value: (r) => String(r.digest ?? "").slice(0, 12) },
  { header: "registered", value: (r) => r.registeredAt },
];

export function registerImageCommands(program: Command, runtime: Runtime): void {
  const image = program.command("image").summary("images: import, list").description("operator-managed VM images: a name with immutable versions");

  image
    .command("import")
    .description("register an image version (platform-admin); the same content again changes nothing")
    .argument("<name>", "image name (lowercase a-z, 0-9, '.', '_', '-')")
    // Not --version: commander gives the root program's --version precedence anywhere on the line.
    .requiredOption("--image-version <v>", "the version (never reused for other content)")
    .option("--file <path>", "a local image file (hashed here; the image store reads the same path)")
    .option("--url <url>", "an http(s) URL the image store downloads (needs --digest)")
    .option("--digest <sha256>", "the content's sha256 (required with --url; checked against --file)")
    .option("--format <format>", "qcow2, raw or kernel+initrd (default qcow2, kernel+initrd with --kernel)")
    .option("--kernel <file>", "kernel+initrd: the kernel")
    .option("--initrd <file>", "kernel+initrd: the initrd")
    .option("--cmdline <text>", "kernel+initrd: kernel command line")
    .requiredOption("--os-family <family>", "e.g. debian, talos, linux")
    .requiredOption("--guest-init <kind>", "cloud-init, talos or none")
    .option("--wait", "accepted for symmetry: registration is synchronous")
    .action(async (name: string, options: ImportOptions, command: Command) => {
      const body = await imageImportBody(name, options);
      const client = await runtime.client(command);
      const response = await client.request<Resource>("POST", "/v1/images", { body, headers: { "idempotency-key": randomUUID() } });
      const version = { name, ...((response.body.version ?? {}) as Resource) };
      render(runtime.io, runtime.format(command), response.body, { rows: [version], columns: VERSION_COLUMNS });
      if (runtime.format(command) === "table") runtime.err(response.status === 201 ? `registered ${name} ${options.imageVersion}\n` : `${name} ${options.imageVersion} exists already with this content; nothing changed\n`);
    });

  image
    .command("list")
    .description("list images and their versions")
    .argument("[name]", "only this image")
    .action(async (name: string | undefined, _options: unknown, command: Command) => {
      const client = await runtime.client(command);
      const images = name === undefined ? await listAll(client, "/v1/images") : [await client.get<Resource>(`/v1/images/${encodeURIComponent(name)}`)];
      const rows = images.flatMap((i) => ((i.versions ?? []) as Resource[]).map((v) => ({ name: i.name, ...v })));
      render(runtime.io, runtime.format(command), images, { rows, columns: VERSION_COLUMNS, empty: "No images." });
    });
}
