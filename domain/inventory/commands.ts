import { z } from "zod";
import { AddressSchema, HostIdSchema, MacInputSchema, NameSchema, SecretRefSchema, SerialSchema } from "./names.ts";
import { BMC_DRIVERS, HOST_ROLES, LinkEndSchema, RackUnitSchema } from "./events.ts";

/**
 * Inventory commands. "Register" commands are declarative: they say what the
 * thing is, and the decider answers with what changed (nothing, when it is so
 * already), which is what makes importing a file twice change nothing.
 * Absent optional fields mean "none" (null), not "keep".
 */
const Text = z.string().trim().min(1).max(200);

export const RegisterDatacenterSchema = z.strictObject({
  type: z.literal("RegisterDatacenter"),
  datacenter: NameSchema,
  displayName: Text.nullish(),
  region: Text.nullish(),
});

export const RegisterRackSchema = z.strictObject({
  type: z.literal("RegisterRack"),
  datacenter: NameSchema,
  rack: NameSchema,
  room: NameSchema.nullish(),
});

export const BmcEndpointInputSchema = z.strictObject({
  driver: z.enum(BMC_DRIVERS),
  address: AddressSchema,
  /** Default: 623 for ipmi, 443 for redfish. */
  port: z.int().min(1).max(65535).optional(),
  username: z.string().min(1).max(200),
  credentialRef: SecretRefSchema.nullish(),
  /** IPMI only: lanplus cipher suite (ipmitool `-C`); absent: the driver's default. */
  cipherSuite: z.int().min(0).max(255).optional(),
});

export const RegisterHostSchema = z.strictObject({
  type: z.literal("RegisterHost"),
  datacenter: NameSchema,
  /** Chosen by the caller for a new host; must be the registered host's id for a known name. */
  hostId: HostIdSchema,
  name: NameSchema,
  rack: NameSchema,
  position: RackUnitSchema.nullish(),
  serial: SerialSchema,
  vendor: Text.nullish(),
  model: Text.nullish(),
  macs: z.array(MacInputSchema).min(1, { message: "a host needs at least one NIC MAC" }),
  role: z.enum(HOST_ROLES).default("bare-metal"),
  bmc: BmcEndpointInputSchema.nullish(),
  /** Names the identity change this registration proposes, if it proposes one. */
  changeId: z.string().min(1).max(100),
});

export const ApproveHostIdentityChangeSchema = z.strictObject({
  type: z.literal("ApproveHostIdentityChange"),
  datacenter: NameSchema,
  hostId: HostIdSchema,
  /** The change the operator reviewed; refused when another one is pending now. Absent: whatever is pending. */
  changeId: z.string().min(1).max(100).optional(),
});

export const RegisterSwitchSchema = z.strictObject({
  type: z.literal("RegisterSwitch"),
  datacenter: NameSchema,
  switch: NameSchema,
  rack: NameSchema.nullish(),
  position: RackUnitSchema.nullish(),
  vendor: Text.nullish(),
  model: Text.nullish(),
  managementAddress: AddressSchema.nullish(),
});

export const RegisterLinkSchema = z.strictObject({
  type: z.literal("RegisterLink"),
  datacenter: NameSchema,
  a: LinkEndSchema,
  b: LinkEndSchema,
});

export const DatacenterCommandSchema = z.discriminatedUnion("type", [
  RegisterDatacenterSchema,
  RegisterRackSchema,
  RegisterHostSchema,
  ApproveHostIdentityChangeSchema,
  RegisterSwitchSchema,
  RegisterLinkSchema,
]);

export const ReserveHostMacsSchema = z.strictObject({
  type: z.literal("ReserveHostMacs"),
  hostId: HostIdSchema,
  datacenter: NameSchema,
  /** The complete set the host holds afterwards (its MACs and a pending change's). */
  macs: z.array(MacInputSchema),
});

export type RegisterDatacenter = z.infer<typeof RegisterDatacenterSchema>;
export type RegisterRack = z.infer<typeof RegisterRackSchema>;
export type RegisterHost = z.infer<typeof RegisterHostSchema>;
export type RegisterHostInput = z.input<typeof RegisterHostSchema>;
export type ApproveHostIdentityChange = z.infer<typeof ApproveHostIdentityChangeSchema>;
export type RegisterSwitch = z.infer<typeof RegisterSwitchSchema>;
export type RegisterLink = z.infer<typeof RegisterLinkSchema>;
export type DatacenterCommand = z.infer<typeof DatacenterCommandSchema>;
export type DatacenterCommandInput = z.input<typeof DatacenterCommandSchema>;
export type ReserveHostMacs = z.infer<typeof ReserveHostMacsSchema>;

export const DEFAULT_BMC_PORTS = { ipmi: 623, redfish: 443 } as const;
