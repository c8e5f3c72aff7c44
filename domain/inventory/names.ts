import { z } from "zod";
import { DomainError } from "../shared/errors.ts";
import { DNS_LABEL_PATTERN, isDnsLabel, NameSchema } from "../sentral/names.ts";

/**
 * Names and identity values of the inventory. Datacenter, room, rack, host and
 * switch names are DNS labels (they end up in hostnames, NATS subjects and
 * Talos configs); MACs are kept in one normal form so that `52-54-00-AB-...`
 * and `52:54:00:ab:...` are the same NIC everywhere (registry, PXE lookup).
 */
export { DNS_LABEL_PATTERN, isDnsLabel, NameSchema };

export const HostIdSchema = z.string().min(1, { message: "must not be empty" }).max(100);

/** Lowercase, colon-separated, six octets: the only form events and read models hold. */
export const NORMAL_MAC_PATTERN = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/**
 * `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff` or `aabbccddeeff`
 * (any case) -> `aa:bb:cc:dd:ee:ff`; anything else -> undefined. Refuses the
 * all-zero and broadcast addresses and multicast ones (low bit of the first
 * octet), which no NIC a server boots from can have.
 */
export function normalizeMac(value: string): string | undefined {
  const trimmed = value.trim();
  let hex: string;
  if (/^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}$/.test(trimmed)) hex = trimmed.replace(/[:-]/g, "");
  else if (/^[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}$/.test(trimmed)) hex = trimmed.replace(/\./g, "");
  else if (/^[0-9a-fA-F]{12}$/.test(trimmed)) hex = trimmed;
  else return undefined;
  hex = hex.toLowerCase();
  if ((parseInt(hex.slice(0, 2), 16) & 1) === 1) return undefined;
  if (hex === "000000000000") return undefined;
  return hex.match(/../g)!.join(":");
}

/** Accepts any form normalizeMac does and yields the normal form. */
export const MacInputSchema = z.string().transform((value, ctx) => {
  const mac = normalizeMac(value);
  if (mac === undefined) {
    ctx.addIssue({ code: "custom", message: "must be a unicast MAC address such as 52:54:00:12:34:01" });
    return z.NEVER;
  }
  return mac;
});

/** A MAC as events carry it: already normal. */
export const MacSchema = z.string().regex(NORMAL_MAC_PATTERN, { message: "must be a MAC in normal form (aa:bb:cc:dd:ee:ff)" });

export const SerialSchema = z.string().trim().min(1).max(200);
export const SecretRefSchema = z.string().regex(/^secret:[0-9a-f-]{36}$/, { message: "must be a secret reference secret:<uuid>" });
/** An IPv4/IPv6 literal or a DNS name: where a BMC or switch answers. */
export const AddressSchema = z.string().trim().min(1).max(253).regex(/^[A-Za-z0-9.:_-]+$/, { message: "must be an IP address or host name" });

export type InventoryThing = "datacenter" | "room" | "rack" | "host" | "switch";

export function checkName(kind: InventoryThing, name: string): DomainError | undefined {
  if (isDnsLabel(name)) return undefined;
  return new DomainError("invalid_name", `${kind} name ${JSON.stringify(name)} is not a DNS label (RFC 1123)`, { kind, name });
}

/** Normalizes a host's MACs, refusing malformed ones and duplicates; the order given is kept (the first is the boot NIC). */
export function checkMacs(macs: readonly string[], hostName: string): string[] | DomainError {
  const out: string[] = [];
  for (const raw of macs) {
    const mac = normalizeMac(raw);
    if (mac === undefined) return new DomainError("invalid_mac", `${JSON.stringify(raw)} is not a unicast MAC address`, { host: hostName, mac: raw });
    if (out.includes(mac)) return new DomainError("duplicate_mac", `host ${hostName} lists MAC ${mac} twice`, { host: hostName, mac });
    out.push(mac);
  }
  return out;
}

export function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}
