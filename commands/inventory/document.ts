/**
 * The inventory file as the import receives it: already checked against the
 * published JSON Schema (api/schemas/inventory.ts), so shapes and formats
 * hold; the rules that need the current inventory are the deciders'.
 */
export interface InventoryDocument {
  readonly datacenters: readonly DocDatacenter[];
}

export interface DocDatacenter {
  readonly name: string;
  readonly displayName?: string;
  readonly region?: string;
  /** Overcommit ratios of the datacenter's hypervisors (allocatable = floor(physical × ratio)); defaults cpu 4, memory 1, disk 1. */
  readonly overcommit?: Partial<DocOvercommit>;
  readonly racks?: readonly DocRack[];
  readonly switches?: readonly DocSwitch[];
  readonly links?: readonly DocLink[];
}

export interface DocRack {
  readonly name: string;
  readonly room?: string;
  readonly hosts?: readonly DocHost[];
}

export interface DocHost {
  readonly name: string;
  readonly serial: string;
  readonly vendor?: string;
  readonly model?: string;
  readonly macs: readonly string[];
  readonly role?: "bare-metal" | "hypervisor";
  readonly position?: number;
  readonly bmc?: DocBmc;
  /** Physical capacity; required for (and only allowed on) `role: hypervisor`. */
  readonly capacity?: DocCapacity;
  /** Hypervisors: the host ports its VMs' SSH forwards take (default 22000-22999). */
  readonly sshPortRange?: { readonly first: number; readonly last: number };
}

export interface DocCapacity {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
}

export interface DocOvercommit {
  readonly cpu: number;
  readonly memory: number;
  readonly disk: number;
}

export interface DocBmc {
  readonly driver: "ipmi" | "redfish";
  readonly address: string;
  readonly port?: number;
  readonly username: string;
  /** IPMI lanplus cipher suite (ipmitool `-C`). */
  readonly cipherSuite?: number;
  readonly password?: string;
  /** Resolved by the client (dvce reads the file next to the inventory file); the server never reads paths. */
  readonly passwordFile?: string;
}

export interface DocSwitch {
  readonly name: string;
  readonly rack?: string;
  readonly position?: number;
  readonly vendor?: string;
  readonly model?: string;
  readonly managementAddress?: string;
}

export interface DocLink {
  readonly a: { readonly device: string; readonly port: string };
  readonly b: { readonly device: string; readonly port: string };
}
