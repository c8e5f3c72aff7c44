/**
 * Relay global ids: base64url (no padding) of the JSON array
 * `[typeName, ...key]`, where the key is the row's primary key in the read
 * model, outermost first:
 *   Tenant      ["Tenant", tenantId]
 *   Project     ["Project", tenantId, projectId]
 *   Environment ["Environment", tenantId, projectId, environmentId]
 *   Task        ["Task", taskId]        (task ids are unique platform-wide)
 * JSON rather than a separator, so ids containing ":" stay unambiguous.
 * Clients must treat them as opaque; the encoding is documented so that
 * operators can read one in a log.
 */
export type GlobalKey =
  | { readonly type: "Tenant"; readonly tenantId: string }
  | { readonly type: "Project"; readonly tenantId: string; readonly projectId: string }
  | { readonly type: "Environment"; readonly tenantId: string; readonly projectId: string; readonly environmentId: string }
  | { readonly type: "Task"; readonly taskId: string };

const ARITY = { Tenant: 1, Project: 2, Environment: 3, Task: 1 } as const;
/** Longer than any id the domain allows (3 ids of at most 100 characters, JSON-escaped), short enough to decode cheaply. */
const MAX_LENGTH = 2_000;

export function tenantGlobalId(tenantId: string): string {
  return encode(["Tenant", tenantId]);
}

export function projectGlobalId(tenantId: string, projectId: string): string {
  return encode(["Project", tenantId, projectId]);
}

export function environmentGlobalId(tenantId: string, projectId: string, environmentId: string): string {
  return encode(["Environment", tenantId, projectId, environmentId]);
}

export function taskGlobalId(taskId: string): string {
  return encode(["Task", taskId]);
}

export function toGlobalId(key: GlobalKey): string {
  switch (key.type) {
    case "Tenant":
      return tenantGlobalId(key.tenantId);
    case "Project":
      return projectGlobalId(key.tenantId, key.projectId);
    case "Environment":
      return environmentGlobalId(key.tenantId, key.projectId, key.environmentId);
    case "Task":
      return taskGlobalId(key.taskId);
  }
}

/** The key a global id names, or null for anything this API did not make. */
export function fromGlobalId(id: string): GlobalKey | null {
  if (id.length === 0 || id.length > MAX_LENGTH || !/^[A-Za-z0-9_-]+$/.test(id)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(id, "base64url").toString("utf8"));
  } catch {
    return null;
  }
  if (!Array.isArray(parsed) || !parsed.every((part) => typeof part === "string" && part.length > 0)) return null;
  const [type, ...key] = parsed as string[];
  if (type === undefined || !Object.hasOwn(ARITY, type) || key.length !== ARITY[type as keyof typeof ARITY]) return null;
  switch (type) {
    case "Tenant":
      return { type, tenantId: key[0]! };
    case "Project":
      return { type, tenantId: key[0]!, projectId: key[1]! };
    case "Task":
      return { type, taskId: key[0]! };
    default:
      return { type: "Environment", tenantId: key[0]!, projectId: key[1]!, environmentId: key[2]! };
  }
}

function encode(parts: readonly string[]): string {
  return Buffer.from(JSON.stringify(parts), "utf8").toString("base64url");
}
