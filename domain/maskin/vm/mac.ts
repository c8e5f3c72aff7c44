/**
 * Deterministic NIC MAC addresses for VMs: derived from the VM id and the NIC
 * index only, so the domain (recorded in `VmRequested`), the provisioning saga
 * and the QEMU adapter all compute the same address without coordinating.
 *
 * The QEMU adapter re-exports this function, so there is one derivation:
 * h = SHA-256("dv-vm-mac\0" + vmId);
 * octets = [(h[0] & 0xfc) | 0x02, h[1], h[2], h[3], h[4], nicIndex].
 * - The first octet is locally administered (bit 1 set) and unicast (bit 0
 *   clear): outside every vendor OUI. We do not use QEMU's fixed `52:54:00`
 *   prefix: it leaves 24 bits (50% chance of a clash at ~4,800 VMs on one L2
 *   domain); this keeps 38 bits (~600,000).
 * - The last octet is the NIC index (0..255), so NICs of one VM never clash.
 * - SHA-256 is implemented here (the domain imports nothing but zod).
 * Output: lowercase, colon separated, the form QEMU's `-device …,mac=` takes.
 * Changing this changes every VM's MAC: it is pinned by a test.
 */
export const VM_MAC_MAX_INDEX = 255;
/** NICs a VM may have (the create command's limit). */
export const VM_MAX_NICS = 16;

export function vmMac(vmId: string, nicIndex: number): string {
  if (!Number.isInteger(nicIndex) || nicIndex < 0 || nicIndex > VM_MAC_MAX_INDEX) {
    throw new RangeError(`vmMac: NIC index must be an integer in 0..${VM_MAC_MAX_INDEX}, got ${nicIndex}`);
  }
  if (vmId.length === 0) throw new RangeError("vmMac: vmId must not be empty");
  const h = sha256(new TextEncoder().encode(`dv-vm-mac\0${vmId}`));
  const octets = [(h[0]! & 0xfc) | 0x02, h[1]!, h[2]!, h[3]!, h[4]!, nicIndex];
  return octets.map((o) => o.toString(16).padStart(2, "0")).join(":");
}

/** True for a locally administered unicast MAC in vmMac's form. */
export function isVmMac(mac: string): boolean {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) return false;
  return (parseInt(mac.slice(0, 2), 16) & 0x03) === 0x02;
}

// ---- SHA-256 (FIPS 180-4), pure ----

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
  0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
  0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

export function sha256(message: Uint8Array): Uint8Array {
  const bitLength = message.length * 8;
  const padded = new Uint8Array(Math.ceil((message.length + 9) / 64) * 64);
  padded.set(message);
  padded[message.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 0x100000000));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const W = new Uint32Array(64);
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let t = 0; t < 16; t++) W[t] = view.getUint32(offset + t * 4);
    for (let t = 16; t < 64; t++) {
      const w15 = W[t - 15]!;
      const w2 = W[t - 2]!;
      const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
      const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
      W[t] = (W[t - 16]! + s0 + W[t - 7]! + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, h] = [H[0]!, H[1]!, H[2]!, H[3]!, H[4]!, H[5]!, H[6]!, H[7]!];
    for (let t = 0; t < 64; t++) {
      const S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[t]! + W[t]!) >>> 0;
      const S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) >>> 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    H[0] = (H[0]! + a) >>> 0;
    H[1] = (H[1]! + b) >>> 0;
    H[2] = (H[2]! + c) >>> 0;
    H[3] = (H[3]! + d) >>> 0;
    H[4] = (H[4]! + e) >>> 0;
    H[5] = (H[5]! + f) >>> 0;
    H[6] = (H[6]! + g) >>> 0;
    H[7] = (H[7]! + h) >>> 0;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, H[i]!);
  return out;
}
