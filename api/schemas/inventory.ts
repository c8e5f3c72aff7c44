import { Ajv2020, type ErrorObject } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { InventoryDocument } from "../../commands/inventory/document.ts";

/**
 * The published JSON Schema (2020-12) of an inventory file, served at
 * GET /v1/schemas/inventory.json (point an editor's YAML language server at
 * it). The import validates every document against it with ajv, collecting
 * every error (allErrors), before anything else.
 */
export const INVENTORY_SCHEMA_ID = "https://dataverket.dev/schemas/inventory.json";

const dnsLabel = {
  type: "string",
  maxLength: 63,
  pattern: "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
  description: "DNS label: lowercase a-z, 0-9 and '-', starting and ending with a letter or digit",
} as const;
const text = { type: "string", minLength: 1, maxLength: 200 } as const;
const address = { type: "string", minLength: 1, maxLength: 253, pattern: "^[A-Za-z0-9.:_-]+$", description: "IP address or DNS name" } as const;
const count = (description: string) => ({ type: "integer", minimum: 0, maximum: 1_000_000_000, description }) as const;
const ratio = (fallback: number) => ({ type: "number", exclusiveMinimum: 0, maximum: 64, default: fallback }) as const;
const rackUnit = { type: "integer", minimum: 1, maximum: 100, description: "Lowest rack unit occupied (1 = bottom)" } as const;
const mac = {
  type: "string",
  pattern: "^(?:[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\\.[0-9A-Fa-f]{4}\\.[0-9A-Fa-f]{4}|[0-9A-Fa-f]{12})$",
  description: "MAC address (aa:bb:cc:dd:ee:ff, aa-bb-..., aabb.ccdd.eeff or aabbccddeeff; stored lowercase with colons)",
} as const;

export const inventoryJsonSchema = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  $id: INVENTORY_SCHEMA_ID,
  title: "Dataverket inventory",
  description: "Datacenters, racks, hosts (with BMC endpoints), switches and links. Importing the same file twice changes nothing.",
  type: "object",
  additionalProperties: false,
  required: ["datacenters"],
  properties: {
    datacenters: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name"],
        properties: {
          name: { ...dnsLabel, description: "Datacenter (a failure domain), e.g. osl1" },
          displayName: text,
          region: text,
          overcommit: {
            type: "object",
            additionalProperties: false,
            description: "Overcommit ratios of this datacenter's hypervisors: allocatable = floor(physical × ratio). Defaults cpu 4, memory 1, disk 1.",
            properties: { cpu: ratio(4), memory: ratio(1), disk: ratio(1) },
          },
          racks: {
            type: "array",
            items: {
              type: "object",
              additionalProperties: false,
              required: ["name"],
              properties: {
                name: dnsLabel,
                room: dnsLabel,
                hosts: {
                  type: "array",
                  items: {
                    type: "object",
                    additionalProperties: false,
                    required: ["name", "serial", "macs"],
                    if: { required: ["role"], properties: { role: { const: "hypervisor" } } },
                    then: { required: ["capacity"] },
                    else: { not: { required: ["capacity"] } },
                    properties: {
                      name: dnsLabel,
                      serial: text,
                      vendor: text,
                      model: text,
                      macs: { type: "array", minItems: 1, items: mac, description: "NIC MACs; the first is the boot NIC" },
                      role: { enum: ["bare-metal", "hypervisor"], default: "bare-metal" },
                      position: rackUnit,
                      capacity: {
                        type: "object",
                        additionalProperties: false,
                        required: ["vcpus", "memoryMiB", "diskGiB"],
                        description: "A hypervisor's physical capacity (role hypervisor only; required there)",
                        properties: { vcpus: count("Hardware threads"), memoryMiB: count("Memory, MiB"), diskGiB: count("VM disk space, GiB") },
                      },
                      sshPortRange: {
                        type: "object",
                        additionalProperties: false,
                        required: ["first", "last"],
                        description: "Hypervisors: the host ports its VMs' SSH forwards take (default 22000-22999)",
                        properties: { first: { type: "integer", minimum: 1, maximum: 65535 }, last: { type: "integer", minimum: 1, maximum: 65535 } },
                      },
                      bmc: {
                        type: "object",
                        additionalProperties: false,
                        required: ["driver", "address", "username"],
                        properties: {
                          driver: { enum: ["ipmi", "redfish"] },
                          address,
                          port: { type: "integer", minimum: 1, maximum: 65535, description: "Default 623 (ipmi), 443 (redfish)" },
                          username: { type: "string", minLength: 1, maxLength: 200 },
                          cipherSuite: { type: "integer", minimum: 0, maximum: 255, description: "IPMI lanplus cipher suite (ipmitool -C); default 3, many current BMCs want 17" },
                          password: { type: "string", minLength: 1, maxLength: 1024, description: "Stored encrypted; events carry only a reference" },
                          passwordFile: { type: "string", minLength: 1, description: "File holding the password, relative to the inventory file (read by the CLI)" },
                        },
                        not: { required: ["password", "passwordFile"] },
                      },
                    },
                  },
                },
              },
            },
          },
          switches: {
            type: "array",
            items: {
              type: "object",
              additionalProperties: false,
              required: ["name"],
              properties: { name: dnsLabel, rack: dnsLabel, position: rackUnit, vendor: text, model: text, managementAddress: address },
            },
          },
          links: {
            type: "array",
            items: {
              type: "object",
              additionalProperties: false,
              required: ["a", "b"],
              properties: {
                a: { $ref: "#/$defs/linkEnd" },
                b: { $ref: "#/$defs/linkEnd" },
              },
            },
          },
        },
      },
    },
  },
  $defs: {
    linkEnd: {
      type: "object",
      additionalProperties: false,
      required: ["device", "port"],
      properties: { device: { ...dnsLabel, description: "A host or switch of the datacenter" }, port: { type: "string", minLength: 1, maxLength: 100 } },
    },
  },
} as const;

const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, useDefaults: false, verbose: true });
(addFormats as unknown as (ajv: Ajv2020) => void)(ajv);
const validate = ajv.compile(inventoryJsonSchema);

export interface SchemaError {
  readonly path: string;
  readonly message: string;
}

/** Every way `value` breaks the schema, with dotted paths (`datacenters[0].racks[1].hosts[0].macs[0]`). */
export function validateInventoryDocument(value: unknown): { ok: true; document: InventoryDocument } | { ok: false; errors: SchemaError[] } {
  if (validate(value)) return { ok: true, document: value as unknown as InventoryDocument };
  const seen = new Set<string>();
  const errors: SchemaError[] = [];
  for (const error of validate.errors ?? []) {
    if (error.keyword === "if") continue; // the then/else branch's own error says what is wrong
    const e = toError(error);
    const key = `${e.path}\n${e.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      errors.push(e);
    }
  }
  return { ok: false, errors };
}

function toError(error: ErrorObject): SchemaError {
  const segments = error.instancePath.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  let message = error.message ?? "is not valid";
  switch (error.keyword) {
    case "required":
      segments.push((error.params as { missingProperty: string }).missingProperty);
      message = "is required";
      break;
    case "additionalProperties":
      segments.push((error.params as { additionalProperty: string }).additionalProperty);
      message = "is not a known field";
      break;
    case "pattern":
      message = (error.parentSchema as { description?: string } | undefined)?.description
        ? `must be a ${(error.parentSchema as { description: string }).description}`
        : message;
      break;
    case "enum":
      message = `must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(", ")}`;
      break;
    case "not":
      message = segments.at(-1) === "bmc" ? "give password or passwordFile, not both" : "capacity is only for hosts with role hypervisor";
      if (segments.at(-1) !== "bmc") segments.push("capacity");
      break;
  }
  let path = "";
  for (const segment of segments) path += /^\d+$/.test(segment) ? `[${segment}]` : path === "" ? segment : `.${segment}`;
  return { path, message };
}
