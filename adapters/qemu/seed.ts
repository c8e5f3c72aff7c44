import { execFile as execFileCb } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";

const execFile = promisify(execFileCb);

/**
 * cloud-init's NoCloud seed: an ISO9660 volume labelled `cidata` holding
 * `user-data`, `meta-data` (instance-id, local-hostname) and
 * `network-config`, attached to the VM as a CD-ROM (runtime.ts `seedIso`).
 * cloud-init finds it by the label; the lab's busybox guest reads it the
 * same way (test/adapters/qemu/support).
 *
 * The files are rendered by a pure function (`seedFiles`, YAML through the
 * `yaml` package, so no value can break out of its field); the ISO is written
 * by Debian's `genisoimage` (Joliet + Rock Ridge, like cloud-utils'
 * `cloud-localds`), through execFile, into a temporary file renamed into
 * place, so a reader never sees half an ISO.
 */

export const SEED_VOLUME_LABEL = "cidata";
export const SEED_INSTALL_HINT = "apt-get install --no-install-recommends genisoimage";

export interface SeedInput {
  /** cloud-init runs its once-per-instance modules again when this changes: the VM id is a good one. */
  readonly instanceId: string;
  readonly hostname: string;
  /** Authorized keys for the default user (the tenant's plus, when opted in, the platform's debug key). */
  readonly sshAuthorizedKeys?: readonly string[];
  /** More #cloud-config keys, merged over the generated ones. */
  readonly cloudConfig?: Readonly<Record<string, unknown>>;
  /** Raw user-data (a `#cloud-config` document or a `#!` script), used instead of the generated one. */
  readonly userData?: string;
  /** NICs to configure with DHCP, matched by MAC (netplan v2 `match.macaddress`). */
  readonly nicMacs?: readonly string[];
  /** A whole network-config (v2) instead of the generated one. */
  readonly networkConfig?: Readonly<Record<string, unknown>>;
}

export interface SeedFiles {
  readonly "user-data": string;
  readonly "meta-data": string;
  readonly "network-config": string;
}

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** The three seed files' contents (pure). */
export function seedFiles(input: SeedInput): SeedFiles {
  if (!HOSTNAME.test(input.hostname)) throw new RangeError(`invalid hostname ${JSON.stringify(input.hostname)} (RFC 1123, lower case)`);
  if (!/^[\x21-\x7e]{1,128}$/.test(input.instanceId)) throw new RangeError(`invalid instance-id ${JSON.stringify(input.instanceId)}`);
  const shortName = input.hostname.split(".")[0] ?? input.hostname;

  const metaData = stringify({ "instance-id": input.instanceId, "local-hostname": input.hostname });

  let userData: string;
  if (input.userData !== undefined) {
    if (!/^(#cloud-config|#!)/.test(input.userData)) throw new RangeError("userData must start with #cloud-config or #!");
    userData = input.userData;
  } else {
    const config: Record<string, unknown> = {
      hostname: shortName,
      ...(input.hostname.includes(".") ? { fqdn: input.hostname } : {}),
      ...(input.sshAuthorizedKeys?.length ? { ssh_authorized_keys: [...input.sshAuthorizedKeys] } : {}),
      ...input.cloudConfig,
    };
    userData = `#cloud-config\n${stringify(config)}`;
  }

  const network = input.networkConfig ?? {
    version: 2,
    ethernets: Object.fromEntries(
      (input.nicMacs ?? []).map((mac, i) => [`nic${i}`, { match: { macaddress: mac.toLowerCase() }, "set-name": `eth${i}`, dhcp4: true }]),
    ),
  };
  return { "user-data": userData, "meta-data": metaData, "network-config": stringify(network) };
}

/** Writes the seed ISO at `output` (replacing it atomically) and returns its absolute path. */
export async function buildSeedIso(output: string, input: SeedInput, options: { genisoimage?: string } = {}): Promise<string> {
  const files = seedFiles(input);
  const target = resolve(output);
  await mkdir(dirname(target), { recursive: true });
  const work = await mkdtemp(join(dirname(target), ".seed-"));
  try {
    for (const [name, content] of Object.entries(files)) await writeFile(join(work, name), content);
    const tmp = join(work, `seed-${randomBytes(4).toString("hex")}.iso`);
    try {
      await execFile(
        options.genisoimage ?? "genisoimage",
        ["-quiet", "-output", tmp, "-volid", SEED_VOLUME_LABEL, "-joliet", "-rock", "-input-charset", "utf-8", "user-data", "meta-data", "network-config"],
        { cwd: work, maxBuffer: 1 << 20 },
      );
    } catch (error) {
      const e = error as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === "ENOENT") throw new Error(`genisoimage not found: ${SEED_INSTALL_HINT}`);
      throw new Error(`genisoimage failed: ${(e.stderr ?? e.message).trim()}`);
    }
    await rename(tmp, target);
    return target;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
