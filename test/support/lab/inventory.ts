import type { LabServer } from "./server-vm.ts";

/** An inventory import document naming lab servers (QEMU VMs behind ipmi_sim BMCs) in one rack of `datacenter`. */
export function labInventoryYaml(datacenter: string, servers: readonly LabServer[]): string {
  return [
    "datacenters:",
    `  - name: ${datacenter}`,
    "    racks:",
    "      - name: r01",
    "        hosts:",
    ...servers.flatMap((s, i) => [
      `          - name: ${s.name}`,
      `            serial: LAB-${s.name.toUpperCase()}`,
      `            macs: ["${s.mac}"]`,
      `            bmc: { driver: ipmi, address: ${s.bmc.address}, port: ${s.bmc.port}, username: ${s.bmc.username}, password: ${s.bmc.password} }`,
      `            # rack position ${i + 1}`,
    ]),
    "",
  ].join("\n");
}
