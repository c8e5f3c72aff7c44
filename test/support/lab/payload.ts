import { execFile as execFileCb } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";

const execFile = promisify(execFileCb);

/**
 * The stand-in installer the lab VM network-boots: Debian's generic amd64
 * kernel plus a tiny busybox initrd, both built from Debian packages
 * (`apt-get download`, never installed), like ../shared/lab/build-payload.sh.
 *
 * Its /init does what a real installer's last act is: report to the boot
 * service. It brings up eth0 (static 10.0.2.15/24, slirp's guest address),
 * reads `dv.callback=URL` from /proc/cmdline, writes the marker
 * `DVINSTALLED <MAC>` into the first and the last MiB of the VM's disk
 * (/dev/vda, virtio-blk: what a real installer leaves for the wipe to
 * remove), calls `URL{?|&}mac=<eth0 MAC>&outcome=succeeded&ip=<ip>` with
 * busybox wget (a plain GET: busybox has no POST body) and powers the
 * machine off. `dv.outcome=failed` on the command line makes it report a
 * failure instead (for tests of the failure path).
 *
 * The same initrd is the lab's wipe image (DV_WIPE_ASSETS_DIR = the payload
 * directory): given `dv.wipe.callback=URL` instead, it overwrites every
 * virtio/SCSI disk (`/dev/vd*`, `/dev/sd*`) with zeros from its first to its
 * last byte, then calls `URL{?|&}mac=..&outcome=succeeded&devices=/dev/vda&bytes=N`
 * (outcome `failed` with a message when there is no disk or dd fails) and
 * powers off. Progress lines start with `DV-INSTALLER:` (`DV-WIPER:` when
 * wiping) and go to the console and, when the kernel's console is not
 * ttyS0, to ttyS0 too, so the VM's serial log shows them whatever command
 * line the boot service wrote.
 *
 * Cache: `test/.cache/lab/` (gitignored; `LAB_CACHE_DIR` overrides it).
 * `.ci/run` puts the .debs into `<cache>/debs`; when they are missing the
 * builder runs `apt-get download` itself. The payload is keyed by the init
 * script and the .deb names, so changing either builds a new one.
 */

export const LAB_CACHE_DIR = process.env.LAB_CACHE_DIR?.trim() || fileURLToPath(new URL("../../.cache/lab/", import.meta.url));
export const PAYLOAD_INSTALL_HINT = "apt-get download busybox-static $(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}') (into test/.cache/lab/debs; .ci/run does it)";

export interface InstallerPayload {
  /** Absolute path of the kernel (bzImage). */
  readonly kernel: string;
  /** Absolute path of the gzipped newc initrd. */
  readonly initrd: string;
  readonly dir: string;
  /** Kernel release, e.g. 6.1.0-57-amd64. */
  readonly kernelRelease: string;
}

/** The virtio-blk driver and what it needs, in load order (Debian builds them as modules). */
const VIRTIO_MODULES = [
  "drivers/virtio/virtio_ring.ko",
  "drivers/virtio/virtio.ko",
  "drivers/virtio/virtio_pci_modern_dev.ko",
  "drivers/virtio/virtio_pci_legacy_dev.ko",
  "drivers/virtio/virtio_pci.ko",
  "drivers/block/virtio_blk.ko",
] as const;

/** The marker the stand-in installer writes into the disk's first and last MiB (the wipe must remove both). */
export const INSTALL_MARKER = "DVINSTALLED";

export const INSTALLER_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
TAG=DV-INSTALLER
case " $(cat /proc/cmdline) " in *" dv.wipe.callback="*) TAG=DV-WIPER ;; esac
say() {
  echo "$TAG: $*"
  case " $(cat /proc/cmdline) " in *" console=ttyS0"*) ;; *) echo "$TAG: $*" > /dev/ttyS0 2>/dev/null ;; esac
}
say "userspace up on kernel $(uname -r)"
say "cmdline: $(cat /proc/cmdline)"
CB= WIPE_CB= OUTCOME=succeeded
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    dv.callback=*) CB="\${arg#dv.callback=}" ;;
    dv.wipe.callback=*) WIPE_CB="\${arg#dv.wipe.callback=}" ;;
    dv.outcome=*) OUTCOME="\${arg#dv.outcome=}" ;;
  esac
done
insmod /e1000.ko 2>/dev/null
for m in ${VIRTIO_MODULES.map((m) => m.split("/").pop()).join(" ")}; do insmod /$m 2>/dev/null; done
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do [ -e /sys/class/net/eth0 ] && [ -e /sys/block/vda ] && break; sleep 0.2; done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2 dev eth0
MAC=$(cat /sys/class/net/eth0/address)
IP=10.0.2.15
say "eth0 $MAC ip $IP"
disks() { for b in /sys/block/vd* /sys/block/sd*; do [ -e "$b" ] && echo "\${b##*/}"; done; }
# call URL ARGS: GET URL{?|&}ARGS, 5 attempts
call() {
  case "$1" in *\\?*) SEP='&' ;; *) SEP='?' ;; esac
  URL="$1\${SEP}$2"
  ok=
  for attempt in 1 2 3 4 5; do
    # (busybox-static 1.35's wget segfaults on -T: bound it with timeout instead)
    if timeout 15 wget -q -O /tmp/callback.out "$URL"; then ok=1; break; fi
    say "callback attempt $attempt failed"
    sleep 1
  done
  if [ -n "$ok" ]; then say "callback ok: $(head -c 200 /tmp/callback.out 2>/dev/null)"; else say "callback failed"; fi
}
if [ -n "$WIPE_CB" ]; then
  DEVICES= BYTES=0 WOUTCOME=succeeded WMSG=
  for d in $(disks); do
    SECTORS=$(cat /sys/block/$d/size)
    MIB=$(( (SECTORS + 2047) / 2048 ))
    say "wiping /dev/$d: $SECTORS sectors"
    if dd if=/dev/zero of=/dev/$d bs=1M count=$MIB conv=fsync 2>/tmp/dd.err || [ "$(( SECTORS % 2048 ))" != 0 ]; then
      DEVICES="\${DEVICES:+$DEVICES,}/dev/$d"; BYTES=$(( BYTES + SECTORS * 512 ))
    else
      WOUTCOME=failed; WMSG="dd_of_/dev/\${d}_failed"
    fi
  done
  [ -z "$DEVICES" ] && [ "$WOUTCOME" = succeeded ] && { WOUTCOME=failed; WMSG=no_disk_found; }
  sync
  say "wiped $DEVICES ($BYTES bytes): $WOUTCOME"
  call "$WIPE_CB" "mac=$MAC&outcome=$WOUTCOME&devices=$DEVICES&bytes=$BYTES&message=$WMSG"
elif [ -z "$CB" ]; then
  say "no dv.callback= on the kernel command line: nothing to report"
else
  if [ -e /sys/block/vda ]; then
    SECTORS=$(cat /sys/block/vda/size)
    printf '${INSTALL_MARKER} %s\\n' "$MAC" | dd of=/dev/vda bs=512 seek=0 conv=notrunc,fsync 2>/dev/null
    printf '${INSTALL_MARKER} %s\\n' "$MAC" | dd of=/dev/vda bs=512 seek=$(( SECTORS - 2048 )) conv=notrunc,fsync 2>/dev/null
    say "installed: marker written to /dev/vda ($SECTORS sectors)"
  fi
  call "$CB" "mac=$MAC&outcome=$OUTCOME&ip=$IP"
fi
say "powering off"
sync
poweroff -f
while :; do sleep 60; done
`;

let building: Promise<InstallerPayload> | undefined;

/** Builds the payload once per cache key (atomically: concurrent test files share it). */
export function ensureInstallerPayload(): Promise<InstallerPayload> {
  building ??= build().catch((error) => {
    building = undefined;
    throw error;
  });
  return building;
}

async function build(): Promise<InstallerPayload> {
  const debs = join(LAB_CACHE_DIR, "debs");
  await mkdir(debs, { recursive: true });
  let { kernelDeb, busyboxDeb } = await findDebs(debs);
  if (!kernelDeb || !busyboxDeb) {
    await download(debs, !kernelDeb, !busyboxDeb);
    ({ kernelDeb, busyboxDeb } = await findDebs(debs));
    if (!kernelDeb || !busyboxDeb) throw new Error(`the installer payload needs the kernel and busybox-static .debs in ${debs}: ${PAYLOAD_INSTALL_HINT}`);
  }
  const key = createHash("sha256").update("layout-3").update(INSTALLER_INIT).update(kernelDeb).update(busyboxDeb).digest("hex").slice(0, 12);
  const dir = join(LAB_CACHE_DIR, `payload-${key}`);
  const kernel = join(dir, "vmlinuz");
  const initrd = join(dir, "initrd.gz");
  // Only the kernel and the initrd may be named vmlinuz*/kernel*/initrd*: the dir is usable as DV_BOOT_ASSETS_DIR as it is.
  const release = join(dir, "RELEASE");
  if (await nonEmpty(kernel) && await nonEmpty(initrd) && await nonEmpty(release)) {
    return { kernel, initrd, dir, kernelRelease: (await readFile(release, "utf8")).trim() };
  }

  const work = join(LAB_CACHE_DIR, `.build-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(join(work, "kx"), { recursive: true });
    await mkdir(join(work, "bbx"), { recursive: true });
    await mkdir(join(work, "out"), { recursive: true });
    // The kernel .deb is 70 MB; only vmlinuz and e1000.ko come out of it.
    await execFile("bash", ["-c", 'set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards "./boot/vmlinuz-*" "./lib/modules/*/kernel/drivers/net/ethernet/intel/e1000/e1000.ko" "./lib/modules/*/kernel/drivers/virtio/*.ko" "./lib/modules/*/kernel/drivers/block/virtio_blk.ko"', "_", join(debs, kernelDeb), join(work, "kx")], { maxBuffer: 16 << 20 });
    await execFile("dpkg-deb", ["-x", join(debs, busyboxDeb), join(work, "bbx")]);
    const vmlinuz = (await readdir(join(work, "kx", "boot"))).find((f) => f.startsWith("vmlinuz-"));
    if (!vmlinuz) throw new Error(`no boot/vmlinuz-* in ${kernelDeb}`);
    const kernelRelease = vmlinuz.slice("vmlinuz-".length);
    const e1000 = await readFile(join(work, "kx", "lib", "modules", kernelRelease, "kernel", "drivers", "net", "ethernet", "intel", "e1000", "e1000.ko"));
    const busybox = await readFile(join(work, "bbx", "bin", "busybox"));
    const modules = await Promise.all(VIRTIO_MODULES.map(async (m) => ({ path: m.split("/").pop()!, mode: 0o100644, data: await readFile(join(work, "kx", "lib", "modules", kernelRelease, "kernel", m)) })));

    const archive = newcArchive([
      { path: "bin", mode: 0o040755 },
      { path: "proc", mode: 0o040755 },
      { path: "sys", mode: 0o040755 },
      { path: "dev", mode: 0o040755 },
      { path: "tmp", mode: 0o041777 },
      { path: "bin/busybox", mode: 0o100755, data: busybox },
      { path: "e1000.ko", mode: 0o100644, data: e1000 },
      ...modules,
      { path: "init", mode: 0o100755, data: Buffer.from(INSTALLER_INIT) },
    ]);
    await rename(join(work, "kx", "boot", vmlinuz), join(work, "out", "vmlinuz"));
    await writeFile(join(work, "out", "initrd.gz"), gzipSync(archive, { level: 6 }));
    await writeFile(join(work, "out", "RELEASE"), `${kernelRelease}\n`);
    try {
      await rename(join(work, "out"), dir);
    } catch (error) {
      // Another test file built the same payload meanwhile: theirs is as good.
      if (!(await nonEmpty(initrd))) throw error;
    }
    return { kernel, initrd, dir, kernelRelease };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function findDebs(dir: string): Promise<{ kernelDeb?: string; busyboxDeb?: string }> {
  const files = (await readdir(dir)).sort();
  return {
    kernelDeb: files.filter((f) => /^linux-image-\d[^_]*-amd64_.*\.deb$/.test(f)).at(-1),
    busyboxDeb: files.filter((f) => /^busybox-static_.*\.deb$/.test(f)).at(-1),
  };
}

async function download(dir: string, kernel: boolean, busybox: boolean): Promise<void> {
  const packages: string[] = [];
  try {
    if (kernel) {
      const { stdout } = await execFile("apt-cache", ["depends", "linux-image-amd64"]);
      const name = /Depends: (linux-image-\d\S*-amd64)/.exec(stdout)?.[1];
      if (!name) throw new Error("apt-cache does not know linux-image-amd64 (run apt-get update)");
      packages.push(name);
    }
    if (busybox) packages.push("busybox-static");
    await execFile("apt-get", ["download", ...packages], { cwd: dir, maxBuffer: 16 << 20 });
  } catch (error) {
    throw new Error(`cannot download ${packages.join(" ") || "the payload packages"} into ${dir} (${(error as Error).message.split("\n")[0]}): ${PAYLOAD_INSTALL_HINT}`);
  }
}

async function nonEmpty(file: string): Promise<boolean> {
  return stat(file).then((s) => s.size > 0, () => false);
}

interface CpioEntry {
  readonly path: string;
  readonly mode: number;
  readonly data?: Buffer;
}

/** A gzip-ready cpio archive in the kernel's "newc" format (what initramfs unpacks). */
export function newcArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const header = (ino: number, mode: number, nlink: number, size: number, name: string) => {
    const hex = (n: number) => n.toString(16).padStart(8, "0");
    const nameBytes = Buffer.from(`${name}\0`);
    const head = Buffer.from(
      "070701" + hex(ino) + hex(mode) + hex(0) + hex(0) + hex(nlink) + hex(0) + hex(size) + hex(0) + hex(0) + hex(0) + hex(0) + hex(nameBytes.length) + hex(0),
      "ascii",
    );
    parts.push(head, nameBytes, pad4(head.length + nameBytes.length));
  };
  let ino = 1;
  for (const entry of entries) {
    const data = entry.data ?? Buffer.alloc(0);
    header(ino++, entry.mode, (entry.mode & 0o040000) !== 0 ? 2 : 1, data.length, entry.path);
    parts.push(data, pad4(data.length));
  }
  header(0, 0, 1, 0, "TRAILER!!!");
  const archive = Buffer.concat(parts);
  return Buffer.concat([archive, Buffer.alloc((512 - (archive.length % 512)) % 512)]);
}

/** Where the repository's root is (for messages). */
export const REPO_ROOT = resolve(fileURLToPath(new URL("../../../", import.meta.url)));
