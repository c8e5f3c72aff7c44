import { z } from "zod";

/**
 * RFC 9457 problem details: every error the API answers is one of these, as
 * `application/problem+json`. `type` is stable (`https://dataverket.dev/problems/<code>`)
 * and `code` repeats its last segment so scripts can switch on it.
 *
 * Status per code (the one table the error handler consults):
 *
 * | status | codes |
 * |---|---|
 * | 400 | validation_failed, malformed_body, command_invalid, invalid_if_match, invalid_cursor, invalid_idempotency_key, invalid_position, bad_request (other 4xx from the framework keep their status) |
 * | 401 | unauthenticated, invalid_token, invalid_credentials, install_token_invalid (boot service: no current, unused install token), wipe_token_invalid (the same for a wipe) |
 * | 403 | forbidden, scope_mismatch |
 * | 404 | boot_asset_not_found, tenant_not_found, project_not_found, environment_not_found, service_account_not_found, task_not_found, dead_letter_not_found, datacenter_not_found, host_not_found, hypervisor_not_found, image_not_found, disk_image_not_found, vm_not_found, route_not_found |
 * | 409 | tenant_exists, project_exists, environment_exists, project_name_taken, environment_name_taken, tenant_suspended, project_archived, project_has_active_environments, subject_kind_mismatch, task_finished, task_not_failed, image_version_immutable, vm_invalid_state, vm_not_placed, concurrency_conflict, idempotency_key_in_use |
 * | 412 | precondition_failed (If-Match named a version the tenant stream is no longer at) |
 * | 413 | body_too_large |
 * | 415 | unsupported_media_type |
 * | 422 | invalid_name, invalid_quota, invalid_role, invalid_subject, quota_exceeds_tenant_limit, quota_below_project_limit, idempotency_key_reused, and any domain code not listed here |
 * | 429 | rate_limited (with Retry-After) |
 * | 500 | internal_error (no stack; logged with the correlation id) |
 * | 503 | identity_provider_unavailable (the OIDC provider cannot be reached; with Retry-After), dlq_unavailable (no NATS behind /v1/dlq now; with Retry-After), console_unavailable (no NATS, or the VM's hypervisor worker does not answer), boot_config_unavailable (the boot service has no Talos secrets for the node's cluster, or its inputs are refused) |
 * | 504 | projection_lagging (a read's minPosition was not reached in time) |
 *
 * 409 means "conflicts with the resource's current state: change the state
 * (or your request) and try again"; 422 means "well-formed, but a business
 * rule refuses these values".
 */
export const PROBLEM_BASE = "https://dataverket.dev/problems/";
export const PROBLEM_CONTENT_TYPE = "application/problem+json";

interface ProblemKind {
  readonly status: number;
  readonly title: string;
}

export const PROBLEM_KINDS = {
  validation_failed: { status: 400, title: "The request is not valid" },
  malformed_body: { status: 400, title: "The request body could not be read" },
  command_invalid: { status: 400, title: "The command is not valid" },
  invalid_if_match: { status: 400, title: "If-Match is not a single entity tag" },
  invalid_cursor: { status: 400, title: "The cursor is not valid for this list" },
  invalid_idempotency_key: { status: 400, title: "Idempotency-Key is not valid" },
  invalid_position: { status: 400, title: "Not a log position" },
  bad_request: { status: 400, title: "Bad request" },
  unauthenticated: { status: 401, title: "Authentication required" },
  invalid_token: { status: 401, title: "The bearer token is not valid" },
  invalid_credentials: { status: 401, title: "The credentials are not valid" },
  install_token_invalid: { status: 401, title: "The install token is not valid" },
  wipe_token_invalid: { status: 401, title: "The wipe token is not valid" },
  forbidden: { status: 403, title: "Not allowed" },
  scope_mismatch: { status: 403, title: "Outside the caller's scope" },
  tenant_not_found: { status: 404, title: "Tenant not found" },
  project_not_found: { status: 404, title: "Project not found" },
  environment_not_found: { status: 404, title: "Environment not found" },
  service_account_not_found: { status: 404, title: "Service account not found" },
  task_not_found: { status: 404, title: "Task not found" },
  dead_letter_not_found: { status: 404, title: "Dead letter not found" },
  datacenter_not_found: { status: 404, title: "Datacenter not found" },
  host_not_found: { status: 404, title: "Host not found" },
  hypervisor_not_found: { status: 404, title: "Hypervisor not found" },
  image_not_found: { status: 404, title: "Image not found" },
  disk_image_not_found: { status: 404, title: "Disk image not found" },
  vm_not_found: { status: 404, title: "VM not found" },
  route_not_found: { status: 404, title: "No such route" },
  boot_asset_not_found: { status: 404, title: "No such boot asset" },
  tenant_exists: { status: 409, title: "The tenant exists already" },
  project_exists: { status: 409, title: "The project exists already" },
  environment_exists: { status: 409, title: "The environment exists already" },
  project_name_taken: { status: 409, title: "The project name is taken" },
  environment_name_taken: { status: 409, title: "The environment name is taken" },
  tenant_suspended: { status: 409, title: "The tenant is suspended" },
  project_archived: { status: 409, title: "The project is archived" },
  project_has_active_environments: { status: 409, title: "The project has active environments" },
  subject_kind_mismatch: { status: 409, title: "The subject is of another kind" },
  task_finished: { status: 409, title: "The task has finished" },
  task_not_failed: { status: 409, title: "The task has not failed" },
  image_version_immutable: { status: 409, title: "The image version exists with other content" },
  vm_invalid_state: { status: 409, title: "The VM's state does not allow this" },
  vm_not_placed: { status: 409, title: "The VM has no hypervisor yet" },
  identity_change_not_found: { status: 409, title: "No identity change is waiting for approval" },
  identity_change_superseded: { status: 409, title: "Another identity change is waiting now" },
  concurrency_conflict: { status: 409, title: "The resource changed concurrently" },
  idempotency_key_in_use: { status: 409, title: "A request with this Idempotency-Key is still in progress" },
  precondition_failed: { status: 412, title: "The tenant is not at the version named in If-Match" },
  body_too_large: { status: 413, title: "The request body is too large" },
  unsupported_media_type: { status: 415, title: "Send application/json" },
  invalid_name: { status: 422, title: "The name is not a DNS label" },
  invalid_quota: { status: 422, title: "The quota is not valid" },
  invalid_role: { status: 422, title: "Not a role" },
  invalid_subject: { status: 422, title: "Not a subject" },
  quota_exceeds_tenant_limit: { status: 422, title: "The project quota exceeds the tenant's limit" },
  quota_below_project_limit: { status: 422, title: "The tenant quota is below a project's limit" },
  idempotency_key_reused: { status: 422, title: "The Idempotency-Key was used for a different request" },
  inventory_invalid: { status: 422, title: "The inventory document cannot be imported" },
  rate_limited: { status: 429, title: "Too many requests" },
  internal_error: { status: 500, title: "Internal error" },
  identity_provider_unavailable: { status: 503, title: "The identity provider cannot be reached" },
  dlq_unavailable: { status: 503, title: "The dead-letter queue cannot be reached" },
  console_unavailable: { status: 503, title: "The VM's console cannot be read now" },
  boot_config_unavailable: { status: 503, title: "The node's machine config cannot be made now" },
  projection_lagging: { status: 504, title: "The read model did not reach the requested position in time" },
} as const satisfies Record<string, ProblemKind>;

export type ProblemCode = keyof typeof PROBLEM_KINDS;

/** A domain code the table does not know is a rule violation. */
const UNKNOWN_DOMAIN_CODE: ProblemKind = { status: 422, title: "A business rule refused the request" };

export function problemKind(code: string): ProblemKind {
  return Object.hasOwn(PROBLEM_KINDS, code) ? PROBLEM_KINDS[code as ProblemCode] : UNKNOWN_DOMAIN_CODE;
}

export function problemType(code: string): string {
  return `${PROBLEM_BASE}${code}`;
}

export const FieldErrorSchema = z.object({
  path: z.string().describe("Dotted path of the failing field (`limits.vcpus`), \"\" for the whole input"),
  message: z.string(),
  in: z.enum(["body", "query", "path", "header"]).optional().describe("Where the field is"),
});
export type FieldError = z.infer<typeof FieldErrorSchema>;

/** The body of every error response. Extension members: `code`, `errors`, `details`, `correlationId`. */
export const ProblemSchema = z.looseObject({
  type: z.string(),
  title: z.string(),
  status: z.int(),
  detail: z.string().optional(),
  instance: z.string().optional(),
  code: z.string(),
  correlationId: z.string().optional(),
  errors: z.array(FieldErrorSchema).optional().describe("Every failing field (validation problems)"),
  details: z.record(z.string(), z.unknown()).optional().describe("Ids and values the refusing rule named"),
});
export type Problem = z.infer<typeof ProblemSchema>;

/** Thrown by the API's own code for an answer that is a problem; the error handler renders it. */
export class ApiProblem extends Error {
  override readonly name = "ApiProblem";
  readonly status: number;
  constructor(
    readonly code: string,
    detail?: string,
    readonly extra: { errors?: readonly FieldError[]; details?: Record<string, unknown>; headers?: Record<string, string> } = {},
    status?: number,
  ) {
    super(detail ?? problemKind(code).title);
    this.status = status ?? problemKind(code).status;
  }
}

export function problem(code: string, fields: Omit<Problem, "type" | "title" | "status" | "code"> & { status?: number } = {}): Problem {
  const kind = problemKind(code);
  const { status, ...rest } = fields;
  return { type: problemType(code), title: kind.title, status: status ?? kind.status, code, ...rest };
}
