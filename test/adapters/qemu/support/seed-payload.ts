import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ensureInstallerPayload, LAB_CACHE_DIR, newcArchive } from "../../../support/lab/payload.ts";

/**
 * A variant of the lab's kernel + busybox payload (test/support/lab/payload.ts,
 * reused for the kernel, the cached .debs and the cpio writer) whose /init
 * reads a NoCloud seed the way cloud-init would: load the CD-ROM drivers
 * (Debian's kernel has them as modules: scsi_common, scsi_mod, libata,
 * ata_piix, cdrom, sr_mod, isofs, in dependency order), find the CD-ROM
 * whose volume label is `cidata`, mount it, set the hostname from
 * `meta-data`'s `local-hostname` and print
 *
 *   DV-SEED: hostname=<hostname> instance-id=<id> label=<label>
 *
 * on ttyS0. Then it waits for the ACPI power button (evdev + button
 * modules; the "Power Button" input device), as a guest OS would, and powers
 * off when it is pressed (QEMU exits), or after 120 s without it
 * (`dv.acpi_wait=<seconds>|forever` on the kernel command line changes that:
 * a VM that must stay up for a long test waits forever). Lines start with
 * `DV-SEED:`.
 */

export const SEED_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
say() { echo "DV-SEED: $*"; }
say "userspace up on kernel $(uname -r)"
for m in scsi_common scsi_mod libata ata_piix cdrom sr_mod isofs evdev button; do
  insmod /modules/$m.ko || say "insmod $m failed"
done
# (Debian's busybox-static has no blkid: the ISO9660 volume id is 32 bytes at 32768 + 40)
label() { dd if="$1" bs=8 skip=4101 count=4 2>/dev/null | tr -d ' \\000'; }
DEV=
for i in $(seq 1 100); do
  for d in /dev/sr0 /dev/sr1; do
    if [ -b "$d" ] && [ "$(label "$d")" = cidata ]; then DEV=$d; break 2; fi
  done
  sleep 0.1
done
if [ -z "$DEV" ]; then
  say "no cidata CD-ROM found"
else
  LABEL=$(label "$DEV")
  mkdir -p /seed
  if mount -t iso9660 -o ro "$DEV" /seed; then
    H=$(sed -n "s/^local-hostname: *//p" /seed/meta-data | tr -d "\\"'\\r")
    IID=$(sed -n "s/^instance-id: *//p" /seed/meta-data | tr -d "\\"'\\r")
    [ -f /seed/user-data ] && say "user-data: $(head -n 1 /seed/user-data)"
    [ -f /seed/network-config ] && say "network-config: $(wc -c < /seed/network-config) bytes"
    hostname "$H"
    say "hostname=$(hostname) instance-id=$IID label=$LABEL"
  else
    say "mount $DEV failed"
  fi
fi
WAIT=120
for arg in $(cat /proc/cmdline); do case "$arg" in dv.acpi_wait=*) WAIT="\${arg#dv.acpi_wait=}";; esac; done
BTN=
for e in /sys/class/input/event*; do
  [ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ] && BTN=/dev/input/\${e##*/} && break
done
if [ -n "$BTN" ]; then
  # Open the device before saying so: evdev queues events only for open clients, so a press
  # that comes right after the line below is not lost. One input_event (24 bytes) = a press.
  exec 3<"$BTN"
  say "waiting for the ACPI power button on $BTN"
  if [ "$WAIT" = forever ]; then dd of=/dev/null bs=24 count=1 <&3 2>/dev/null && say "ACPI power button pressed"
  elif timeout "$WAIT" dd of=/dev/null bs=24 count=1 <&3 2>/dev/null; then say "ACPI power button pressed"; fi
  exec 3<&-
else
  say "no ACPI power button device"
fi
say "powering off"
sync
poweroff -f
while :; do sleep 60; done
`;

const MODULES = [
  "kernel/drivers/scsi/scsi_common.ko",
  "kernel/drivers/scsi/scsi_mod.ko",
  "kernel/drivers/ata/libata.ko",
  "kernel/drivers/ata/ata_piix.ko",
  "kernel/drivers/cdrom/cdrom.ko",
  "kernel/drivers/scsi/sr_mod.ko",
  "kernel/fs/isofs/isofs.ko",
  "kernel/drivers/input/evdev.ko",
  "kernel/drivers/acpi/button.ko",
];

export interface SeedPayload {
  readonly kernel: string;
  readonly initrd: string;
  /** Kernel command line: the init's lines on ttyS0, guest panics end QEMU. */
  readonly append: string;
}

let building: Promise<SeedPayload> | undefined;

export function ensureSeedPayload(): Promise<SeedPayload> {
  building ??= build().catch((error) => {
    building = undefined;
    throw error;
  });
  return building;
}

async function build(): Promise<SeedPayload> {
  const base = await ensureInstallerPayload(); // the kernel, and the .debs in <cache>/debs
  const debs = join(LAB_CACHE_DIR, "debs");
  const files = (await readdir(debs)).sort();
  const kernelDeb = files.filter((f) => /^linux-image-\d[^_]*-amd64_.*\.deb$/.test(f)).at(-1);
  const busyboxDeb = files.filter((f) => /^busybox-static_.*\.deb$/.test(f)).at(-1);
  if (!kernelDeb || !busyboxDeb) throw new Error(`no kernel / busybox-static .deb in ${debs}`);
  const key = createHash("sha256").update("seed-4").update(SEED_INIT).update(kernelDeb).update(busyboxDeb).digest("hex").slice(0, 12);
  const dir = join(LAB_CACHE_DIR, `seed-payload-${key}`);
  const initrd = join(dir, "initrd.gz");
  const result = { kernel: base.kernel, initrd, append: "console=ttyS0 quiet panic=-1" };
  if ((await stat(initrd).then((s) => s.size, () => 0)) > 0) return result;

  const work = join(LAB_CACHE_DIR, `.seed-build-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(join(work, "kx"), { recursive: true });
    await mkdir(join(work, "bbx"), { recursive: true });
    await mkdir(join(work, "out"), { recursive: true });
    const wanted = MODULES.map((m) => `./lib/modules/${base.kernelRelease}/${m}`);
    await pipe(["dpkg-deb", "--fsys-tarfile", join(debs, kernelDeb)], ["tar", "-x", "-C", join(work, "kx"), ...wanted]);
    await pipe(["dpkg-deb", "--fsys-tarfile", join(debs, busyboxDeb)], ["tar", "-x", "-C", join(work, "bbx"), "./bin/busybox"]);
    const modules = await Promise.all(
      MODULES.map(async (m) => ({
        path: `modules/${m.split("/").at(-1)}`,
        mode: 0o100644,
        data: await readFile(join(work, "kx", "lib", "modules", base.kernelRelease, m)),
      })),
    );
    const archive = newcArchive([
      { path: "bin", mode: 0o040755 },
      { path: "proc", mode: 0o040755 },
      { path: "sys", mode: 0o040755 },
      { path: "dev", mode: 0o040755 },
      { path: "tmp", mode: 0o041777 },
      { path: "modules", mode: 0o040755 },
      { path: "bin/busybox", mode: 0o100755, data: await readFile(join(work, "bbx", "bin", "busybox")) },
      ...modules,
      { path: "init", mode: 0o100755, data: Buffer.from(SEED_INIT) },
    ]);
    await writeFile(join(work, "out", "initrd.gz"), gzipSync(archive, { level: 6 }));
    try {
      await rename(join(work, "out"), dir);
    } catch (error) {
      if ((await stat(initrd).then((s) => s.size, () => 0)) === 0) throw error; // another worker won the race otherwise
    }
    return result;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** `a | b` without a shell. */
function pipe(a: readonly string[], b: readonly string[]): Promise<void> {
  return new Promise((resolvePipe, reject) => {
    const left = spawn(a[0]!, a.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const right = spawn(b[0]!, b.slice(1), { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    left.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    right.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    left.stdout.pipe(right.stdin);
    right.stdin.on("error", () => undefined); // tar may close early; its exit code tells
    left.on("error", reject);
    right.on("error", reject);
    right.on("close", (code) => (code === 0 ? resolvePipe() : reject(new Error(`${a.join(" ")} | ${b.join(" ")} failed (${code}): ${stderr.trim()}`))));
  });
}
