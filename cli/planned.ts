import type { Command } from "commander";
import { usageError } from "./core/errors.ts";
import type { Runtime } from "./core/runtime.ts";

/** What each bin without commands yet will manage: one line per planned area. */
export const PLANNED = {
  dvce: {
    service: "Maskin",
    areas: [
      ["VM resize and migration", "change a VM's size; move VMs off a drained hypervisor"],
    ],
  },
  dvke: {
    service: "Plattform",
    areas: [["Kubernetes clusters", "create, scale, upgrade and delete Talos Kubernetes clusters; fetch kubeconfigs"]],
  },
  dvnet: {
    service: "Nett",
    areas: [
      ["networks", "tenant networks and subnets"],
      ["VLANs", "VLAN allocation per datacenter"],
      ["IPAM", "address pools, reservations and leases"],
      ["DNS", "zones and records"],
    ],
  },
  dvos: {
    service: "Objekt",
    areas: [["object storage", "buckets, access keys and usage"]],
  },
  dvapp: {
    service: "Tjeneste",
    areas: [["apps", "deploy and run apps on the platform"]],
  },
} as const satisfies Record<string, { service: string; areas: ReadonlyArray<readonly [string, string]> }>;

export type PlannedBin = keyof typeof PLANNED;

export function plannedText(bin: string, plan: (typeof PLANNED)[PlannedBin]): string {
  const width = Math.max(...plan.areas.map(([area]) => area.length));
  const lines = plan.areas.map(([area, what]) => `  ${area.padEnd(width)}  ${what}`);
  return `${bin} (${plan.service}) has no commands yet. Coming:\n${lines.join("\n")}\n`;
}

/** A bin whose commands are still to come: its help and a bare run print the plan (exit 0); any command is unknown (exit 1). */
export function registerPlanned(program: Command, runtime: Runtime, plan: (typeof PLANNED)[PlannedBin]): void {
  const bin = program.name();
  program
    .allowExcessArguments(true)
    .addHelpText("after", `\n${plannedText(bin, plan)}`)
    .action((_options, self: Command) => {
      const command = self.args[0];
      if (command !== undefined) throw usageError(`${bin}: unknown command ${JSON.stringify(command)}: ${bin} has no commands yet`, `\`${bin} --help\` shows what is coming`);
      runtime.out(plannedText(bin, plan));
    });
}
