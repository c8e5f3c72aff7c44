/**
 * Deterministic NIC MAC addresses for VMs: derived from the VM id and the NIC
 * index only, so the domain, the provisioning saga and the QEMU adapter all
 * compute the same address without storing or coordinating anything.
 *
 * Layout (48 bits): `52` + 36 bits of the VM id's hash + 4 bits of NIC index.
 * - First octet 0x52 = 0101 0010: the locally administered bit (0x02) is set
 *   and the multicast bit (0x01) is clear, so it is a valid unicast address
 *   outside every vendor OUI. It is the first octet QEMU itself uses for
 *   `52:54:00:…`, so operators recognise a VM NIC at a glance, but we keep 40
 *   bits of entropy instead of QEMU's 24 (24 bits gives a 50% chance of a
 *   clash at ~4,800 VMs on one L2 domain; 36 bits at ~300,000).
 * - The NIC index is the low nibble, so the NICs of one VM never clash with
 *   each other; at most 16 NICs per VM (index 0..15).
 * - Hash: FNV-1a 64 over the UTF-8 bytes of the VM id, then MurmurHash3's
 *   64-bit finaliser for avalanche (similar ids such as `vm-1`/`vm-2` land far
 *   apart); pure, no node:crypto in the domain. Its top 36 bits are used.
 *   Changing this changes every VM's MAC: it is pinned by a test.
 * Output: lowercase, colon separated (`52:ab:cd:ef:01:20`), the form QEMU's
 * `-device …,mac=` and QMP expect.
 */
export const VM_MAC_FIRST_OCTET = 0x52;
export const VM_MAX_NICS = 16;

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;

function fnv1a64(text: string): bigint {
  let hash = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * FNV_PRIME) & MASK64;
  }
  return fmix64(hash);
}

function fmix64(value: bigint): bigint {
  let k = value;
  k ^= k >> 33n;
  k = (k * 0xff51afd7ed558ccdn) & MASK64;
  k ^= k >> 33n;
  k = (k * 0xc4ceb9fe1a85ec53n) & MASK64;
  k ^= k >> 33n;
  return k;
}

export function vmMac(vmId: string, nicIndex: number): string {
  if (vmId.length === 0) throw new RangeError("vmMac: vmId must not be empty");
  if (!Number.isInteger(nicIndex) || nicIndex < 0 || nicIndex >= VM_MAX_NICS) {
    throw new RangeError(`vmMac: nicIndex must be an integer 0..${VM_MAX_NICS - 1}, got ${nicIndex}`);
  }
  const top36 = fnv1a64(vmId) >> 28n;
  const low40 = (top36 << 4n) | BigInt(nicIndex);
  const octets = [VM_MAC_FIRST_OCTET];
  for (let shift = 32n; shift >= 0n; shift -= 8n) octets.push(Number((low40 >> shift) & 0xffn));
  return octets.map((o) => o.toString(16).padStart(2, "0")).join(":");
}

/** True for an address `vmMac` could have produced (locally administered unicast with our first octet). */
export function isVmMac(mac: string): boolean {
  return /^52(:[0-9a-f]{2}){5}$/.test(mac);
}
