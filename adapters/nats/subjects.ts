import { IDENTITY_STREAM_PREFIX } from "../../domain/identitet/stream.ts";
import { TENANT_STREAM_PREFIX } from "../../domain/sentral/stream.ts";

/**
 * Which service's subject tree an event goes to, by its stream id's prefix.
 * `task-` is domain/task's TASK_STREAM_PREFIX (spelled out: adapters read
 * domain constants but this one must not wait for domain/task to land).
 */
const SERVICE_BY_PREFIX: ReadonlyArray<readonly [prefix: string, service: string]> = [
  [TENANT_STREAM_PREFIX, "sentral"],
  [IDENTITY_STREAM_PREFIX, "identitet"],
  ["task-", "task"],
];

export interface SubjectSource {
  readonly type: string;
  readonly streamId: string;
}

/**
 * The unqualified subject of an event (wrap it with namespace.qualify):
 * - `dv.<service>.evt.<entity>.<verb>`: the type's last CamelCase word is the
 *   verb (past tense), the words before it the entity, snake_case:
 *   `ProjectCreated` -> `project.created`, `TenantQuotaSet` -> `tenant_quota.set`;
 *   a one-word type uses the service as entity (`Ticked` in `s-1` -> `dv.s.evt.s.ticked`).
 * - `dv.task.evt.<verb>` for task streams: the type minus its `Task` prefix,
 *   snake_case (`TaskStepStarted` -> `step_started`).
 * The service is known for `tenant-` (sentral), `identity-` (identitet) and
 * `task-` (task); otherwise it is the stream id up to its first `-`.
 * Every token is a valid NATS token of [a-z0-9_]: anything else becomes `_`.
 */
export function subjectForEvent(event: SubjectSource): string {
  const service = serviceForStream(event.streamId);
  const words = typeWords(event.type);
  if (service === "task") {
    const rest = words[0] === "task" && words.length > 1 ? words.slice(1) : words;
    return `dv.task.evt.${rest.join("_") || "unknown"}`;
  }
  if (words.length === 0) return `dv.${service}.evt.${service}.unknown`;
  const verb = words[words.length - 1]!;
  const entity = words.length > 1 ? words.slice(0, -1).join("_") : service;
  return `dv.${service}.evt.${entity}.${verb}`;
}

export function serviceForStream(streamId: string): string {
  for (const [prefix, service] of SERVICE_BY_PREFIX) if (streamId.startsWith(prefix)) return service;
  const dash = streamId.indexOf("-");
  return token(dash > 0 ? streamId.slice(0, dash) : streamId) || "unknown";
}

/** `TenantQuotaSet` -> ["tenant", "quota", "set"]; `VmIPAssigned` -> ["vm", "ip", "assigned"]. */
export function typeWords(type: string): string[] {
  const words = type.match(/[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+|[A-Z]/g) ?? [];
  return words.map((word) => token(word)).filter((word) => word.length > 0);
}

/** Lowercase, [a-z0-9_] only. */
function token(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9_]/g, "_");
}
