import { z } from "zod";
import { DomainError } from "../shared/errors.ts";

/**
 * RFC 1123 DNS label: 1-63 characters of lowercase a-z, 0-9 and '-', starting
 * and ending with a letter or digit. Tenant, project and environment names end
 * up in hostnames, Kubernetes namespaces and NATS subjects, so they obey it.
 * (JavaScript's `$` without the `m` flag matches only at the end of input, so a
 * trailing newline is refused.)
 */
export const DNS_LABEL_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const DNS_LABEL_MAX_LENGTH = 63;

export function isDnsLabel(value: string): boolean {
  return DNS_LABEL_PATTERN.test(value);
}

export const NameSchema = z
  .string()
  .max(DNS_LABEL_MAX_LENGTH, { message: "must be at most 63 characters" })
  .regex(DNS_LABEL_PATTERN, {
    message: "must be a DNS label: lowercase a-z, 0-9 and '-', starting and ending with a letter or digit",
  });

/** Ids are opaque non-empty strings (UUIDs in practice); bounded like the envelope's scope ids. */
export const IdSchema = z.string().min(1, { message: "must not be empty" }).max(100);

export const DisplayNameSchema = z.string().trim().min(1).max(200);
export const DescriptionSchema = z.string().max(2000);

export type NamedThing = "tenant" | "project" | "environment";

/** The same rule as a domain rule, so a decider never trusts its caller to have parsed. */
export function checkName(kind: NamedThing, name: string): DomainError | undefined {
  if (isDnsLabel(name)) return undefined;
  return new DomainError("invalid_name", `${kind} name ${JSON.stringify(name)} is not a DNS label (RFC 1123)`, {
    kind,
    name,
  });
}
