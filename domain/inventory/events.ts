import { z } from "zod";
import { AddressSchema, HostIdSchema, MacSchema, NameSchema, SecretRefSchema, SerialSchema } from "./names.ts";

/**
 * Inventory events (Sentral): the facts about datacenters and the hardware in
 * them. Datacenter events live in `datacenter-<name>`; HostMacsReserved lives
 * in the platform MAC registry stream. A published contract: never change a
 * shape in place, add a schemaVersion and an upcaster.
 *
 * No event carries a password: a BMC credential is a secret reference
 * (`secret:<uuid>`) into the secret store (adapters/secrets). Optional values
 * are present as null, so a reader sees one shape.
 */

export const BMC_DRIVERS = ["ipmi", "redfish"] as const;
export const HOST_ROLES = ["bare-metal", "hypervisor"] as const;
export type BmcDriver = (typeof BMC_DRIVERS)[number];
export type HostRole = (typeof HOST_ROLES)[number];

const Datacenter = NameSchema;
const Text = z.string().trim().min(1).max(200);
const PortNumber = z.int().min(1).max(65535);
/** The lowest rack unit the device occupies (1 = bottom). */
export const RackUnitSchema = z.int().min(1).max(100);

/** How to reach a host's BMC, without its address (an identity field, see HostIdentity) and without any password. */
export const BmcSettingsSchema = z.object({
  driver: z.enum(BMC_DRIVERS),
  port: PortNumber,
  username: z.string().min(1).max(200),
  /** Reference into the secret store; null when no password is known yet. */
  credentialRef: SecretRefSchema.nullable(),
  /** IPMI lanplus cipher suite (ipmitool `-C`); absent: the driver's default (3). Many current BMCs want 17. */
  cipherSuite: z.int().min(0).max(255).optional(),
});
export type BmcSettings = z.infer<typeof BmcSettingsSchema>;

/**
 * What makes a host *that* machine: the platform power-cycles whatever answers
 * at the BMC address and installs onto whatever boots with these MACs. Changes
 * to a registered host's identity wait for an operator's approval.
 */
export const HostIdentitySchema = z.object({
  serial: SerialSchema,
  macs: z.array(MacSchema),
  bmcAddress: AddressSchema.nullable(),
});
export type HostIdentity = z.infer<typeof HostIdentitySchema>;

export const DatacenterRegisteredSchema = z.object({
  datacenter: Datacenter,
  displayName: Text.nullable(),
  region: Text.nullable(),
});
/** The resulting values (both, even when one changed). */
export const DatacenterUpdatedSchema = DatacenterRegisteredSchema;

export const RackRegisteredSchema = z.object({ datacenter: Datacenter, rack: NameSchema, room: NameSchema.nullable() });
export const RackUpdatedSchema = RackRegisteredSchema;

/** The non-identity attributes of a host, as a whole (HostUpdated carries all of them). */
export const HostAttributesSchema = z.object({
  rack: NameSchema,
  position: RackUnitSchema.nullable(),
  vendor: Text.nullable(),
  model: Text.nullable(),
  role: z.enum(HOST_ROLES),
  bmc: BmcSettingsSchema.nullable(),
});
export type HostAttributes = z.infer<typeof HostAttributesSchema>;

export const HostRegisteredSchema = z.object({
  datacenter: Datacenter,
  hostId: HostIdSchema,
  name: NameSchema,
  ...HostAttributesSchema.shape,
  ...HostIdentitySchema.shape,
});

export const HostUpdatedSchema = z.object({
  datacenter: Datacenter,
  hostId: HostIdSchema,
  ...HostAttributesSchema.shape,
  /** Which attributes changed, e.g. ["rack", "bmc.credential"]. */
  changed: z.array(z.string()).min(1),
});

/** A new identity for a registered host, not in effect until approved. Replaces an earlier proposal. */
export const HostIdentityChangeProposedSchema = z.object({
  datacenter: Datacenter,
  hostId: HostIdSchema,
  changeId: z.string().min(1).max(100),
  proposed: HostIdentitySchema,
  current: HostIdentitySchema,
});

/** The registration went back to the host's current identity: the pending proposal is dropped. */
export const HostIdentityChangeWithdrawnSchema = z.object({
  datacenter: Datacenter,
  hostId: HostIdSchema,
  changeId: z.string().min(1).max(100),
});

/** An operator approved the pending proposal; `identity` is now the host's identity. */
export const HostIdentityChangeApprovedSchema = z.object({
  datacenter: Datacenter,
  hostId: HostIdSchema,
  changeId: z.string().min(1).max(100),
  identity: HostIdentitySchema,
});

export const SwitchRegisteredSchema = z.object({
  datacenter: Datacenter,
  switch: NameSchema,
  rack: NameSchema.nullable(),
  position: RackUnitSchema.nullable(),
  vendor: Text.nullable(),
  model: Text.nullable(),
  managementAddress: AddressSchema.nullable(),
});
export const SwitchUpdatedSchema = SwitchRegisteredSchema;

export const LinkEndSchema = z.object({ device: NameSchema, port: z.string().trim().min(1).max(100) });
export type LinkEnd = z.infer<typeof LinkEndSchema>;
/** A cable between two ports of hosts or switches in the datacenter; `a` sorts before `b`. */
export const LinkRegisteredSchema = z.object({ datacenter: Datacenter, a: LinkEndSchema, b: LinkEndSchema });

/** The host now holds exactly these MACs platform-wide (empty: none); the previous set is released. */
export const HostMacsReservedSchema = z.object({ hostId: HostIdSchema, datacenter: Datacenter, macs: z.array(MacSchema) });

export const datacenterEventSchemas = {
  DatacenterRegistered: { schemaVersion: 1, schema: DatacenterRegisteredSchema },
  DatacenterUpdated: { schemaVersion: 1, schema: DatacenterUpdatedSchema },
  RackRegistered: { schemaVersion: 1, schema: RackRegisteredSchema },
  RackUpdated: { schemaVersion: 1, schema: RackUpdatedSchema },
  HostRegistered: { schemaVersion: 1, schema: HostRegisteredSchema },
  HostUpdated: { schemaVersion: 1, schema: HostUpdatedSchema },
  HostIdentityChangeProposed: { schemaVersion: 1, schema: HostIdentityChangeProposedSchema },
  HostIdentityChangeWithdrawn: { schemaVersion: 1, schema: HostIdentityChangeWithdrawnSchema },
  HostIdentityChangeApproved: { schemaVersion: 1, schema: HostIdentityChangeApprovedSchema },
  SwitchRegistered: { schemaVersion: 1, schema: SwitchRegisteredSchema },
  SwitchUpdated: { schemaVersion: 1, schema: SwitchUpdatedSchema },
  LinkRegistered: { schemaVersion: 1, schema: LinkRegisteredSchema },
} as const satisfies Record<string, { schemaVersion: number; schema: z.ZodType }>;

export const macRegistryEventSchemas = {
  HostMacsReserved: { schemaVersion: 1, schema: HostMacsReservedSchema },
} as const satisfies Record<string, { schemaVersion: number; schema: z.ZodType }>;

export type DatacenterEventType = keyof typeof datacenterEventSchemas;
export const DATACENTER_EVENT_TYPES = Object.keys(datacenterEventSchemas) as DatacenterEventType[];
export type DatacenterEventData<T extends DatacenterEventType> = z.infer<(typeof datacenterEventSchemas)[T]["schema"]>;
export type DatacenterEvent = { [T in DatacenterEventType]: { type: T; data: DatacenterEventData<T> } }[DatacenterEventType];
export type DatacenterEventOf<T extends DatacenterEventType> = Extract<DatacenterEvent, { type: T }>;

export type MacRegistryEvent = { type: "HostMacsReserved"; data: z.infer<typeof HostMacsReservedSchema> };

export function isDatacenterEventType(type: string): type is DatacenterEventType {
  return Object.hasOwn(datacenterEventSchemas, type);
}
