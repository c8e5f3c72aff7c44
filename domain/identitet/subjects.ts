import { z } from "zod";
import { DomainError } from "../shared/errors.ts";

/**
 * A subject is whoever a token names (`sub`): a person or a service.
 * Subjects are printable ASCII without spaces, at most 200 characters (the
 * envelope's actor id bound, since a subject acts as an actor). OIDC subjects
 * arrive prefixed with their issuer (`auth.example.com:1234`, see
 * adapters/identity/oidc.ts); built-in service accounts never contain ':'
 * (SERVICE_ACCOUNT_PATTERN), so the two namespaces cannot collide.
 */
export const SUBJECT_PATTERN = /^[\x21-\x7e]+$/;
export const SUBJECT_MAX_LENGTH = 200;

export const SubjectSchema = z
  .string()
  .min(1, { message: "must not be empty" })
  .max(SUBJECT_MAX_LENGTH)
  .regex(SUBJECT_PATTERN, { message: "must be printable ASCII without spaces" });

export const SubjectKindSchema = z.enum(["user", "service"]);
export type SubjectKind = z.infer<typeof SubjectKindSchema>;

/**
 * Names of subjects the built-in issuer mints tokens for (service accounts,
 * bootstrap-admin): lowercase letters, digits, '.', '_' and '-', starting
 * with a letter or digit, at most 100 characters; never ':'.
 */
export const SERVICE_ACCOUNT_PATTERN = /^[a-z0-9][a-z0-9._-]{0,99}$/;

export function isBuiltInSubject(subject: string): boolean {
  return SERVICE_ACCOUNT_PATTERN.test(subject);
}

export function checkSubject(subject: string): DomainError | undefined {
  if (SubjectSchema.safeParse(subject).success) return undefined;
  return new DomainError("invalid_subject", `subject ${JSON.stringify(subject)} is not printable ASCII of 1-200 characters`, { subject });
}
