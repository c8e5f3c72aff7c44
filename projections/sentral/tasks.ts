import { sql, type ColumnType, type Kysely, type Selectable } from "kysely";
import type { RecordedEvent } from "../../adapters/eventstore/port.ts";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import {
  currentStep,
  evolveTask,
  TASK_EVENT_TYPES,
  taskEventSchemas,
  type Blocked,
  type ExistingTask,
  type StepState,
  type TaskEvent,
  type TaskEventType,
  type TaskStatus,
} from "../../domain/task/index.ts";
import { defineProjection } from "../projection.ts";

/**
 * Sentral tasks read model (schema `tasks`): one row per task, the state of
 * the Task aggregate as `evolveTask` folds it, so the read model can never
 * disagree with the aggregate about what an event means.
 *
 * Steps, the block, the failure are jsonb (they are read whole, never
 * filtered on); the columns lists filter on (scope, status, resource) are
 * plain and indexed. `steps` keeps the aggregate's full step state (attempts
 * in budget, the outstanding request) so the row folds on exactly; the API
 * shows a subset. `duration_ms` is deadline - creation time at creation: a
 * retry without a deadline gets now + that.
 */

type Timestamp = ColumnType<Date, Date, Date>;
type Json<T> = ColumnType<T, string, string>;

export interface TasksTable {
  task_id: string;
  kind: string;
  title: string;
  resource_type: string;
  resource_id: string;
  tenant_id: string;
  project_id: string | null;
  environment_id: string | null;
  status: TaskStatus;
  current_step: string | null;
  steps: Json<StepState[]>;
  blocked: Json<Blocked | null>;
  failure: Json<ExistingTask["failure"]>;
  cancellation_reason: string | null;
  deadline: Timestamp;
  duration_ms: ColumnType<string, string | number, string | number>;
  max_attempts: number;
  input: Json<Record<string, unknown>>;
  created_at: Timestamp;
  updated_at: Timestamp;
  /** Stream position of the task's last event: the ETag, If-Match's version. */
  version: number;
  /** Log position ("<txid>.<gp>") of the task's last event: where a follower resumes. */
  position: string;
}

export interface TaskTables {
  tasks: TasksTable;
}

export type TaskRow = Selectable<TasksTable>;

export const TASKS_SCHEMA = "tasks";

export const tasksProjection = defineProjection<TaskTables>({
  name: TASKS_SCHEMA,
  version: 1,
  tables: ["tasks"],
  eventTypes: TASK_EVENT_TYPES,

  async createTables(db: Kysely<any>, schema: string) {
    const s = db.schema.withSchema(schema);
    await s
      .createTable("tasks")
      .addColumn("task_id", "text", (c) => c.primaryKey())
      .addColumn("kind", "text", (c) => c.notNull())
      .addColumn("title", "text", (c) => c.notNull())
      .addColumn("resource_type", "text", (c) => c.notNull())
      .addColumn("resource_id", "text", (c) => c.notNull())
      .addColumn("tenant_id", "text", (c) => c.notNull())
      .addColumn("project_id", "text")
      .addColumn("environment_id", "text")
      .addColumn("status", "text", (c) =>
        c.notNull().check(sql`status in ('pending', 'running', 'blocked', 'succeeded', 'failed', 'cancelled')`))
      .addColumn("current_step", "text")
      .addColumn("steps", "jsonb", (c) => c.notNull())
      .addColumn("blocked", "jsonb")
      .addColumn("failure", "jsonb")
      .addColumn("cancellation_reason", "text")
      .addColumn("deadline", "timestamptz", (c) => c.notNull())
      .addColumn("duration_ms", "int8", (c) => c.notNull())
      .addColumn("max_attempts", "integer", (c) => c.notNull())
      .addColumn("input", "jsonb", (c) => c.notNull())
      .addColumn("created_at", "timestamptz", (c) => c.notNull())
      .addColumn("updated_at", "timestamptz", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addColumn("position", "text", (c) => c.notNull())
      .execute();
    // Lists: by scope (tenant, project), by status, by resource; all keyset-ordered by task_id.
    await s.createIndex("tasks_tenant").on("tasks").columns(["tenant_id", "project_id", "task_id"]).execute();
    await s.createIndex("tasks_status").on("tasks").columns(["status", "task_id"]).execute();
    await s.createIndex("tasks_tenant_status").on("tasks").columns(["tenant_id", "status", "task_id"]).execute();
    await s.createIndex("tasks_resource").on("tasks").columns(["resource_type", "resource_id", "task_id"]).execute();
  },

  async handle(db, event) {
    await applyTaskEvents(db, [event]);
  },

  async handleBatch(db, events) {
    await applyTaskEvents(db, events);
  },
});

/** What a row carries besides the aggregate state. */
interface Folded {
  state: ExistingTask;
  createdAt: Date;
  updatedAt: Date;
  durationMs: number;
  version: number;
  position: string;
  /** Created in this batch: inserted (a row already there is an error), else updated. */
  isNew: boolean;
}

/**
 * Folds a batch per task in memory with the aggregate's own evolve, then
 * writes: one insert for tasks created in the batch, one upsert for tasks it
 * changed (all read with one select first, and each must exist). Per event it
 * leaves exactly what the batch leaves, since both are the same fold.
 */
async function applyTaskEvents(db: Kysely<TaskTables>, recorded: readonly RecordedEvent[]): Promise<void> {
  const parsed = recorded.flatMap((r) => {
    const event = parseTaskEvent(r);
    return event ? [{ recorded: r, event }] : [];
  });
  if (parsed.length === 0) return;

  const folded = new Map<string, Folded>();
  const missing = new Set<string>();
  const seen = new Set<string>();
  for (const { event } of parsed) {
    if (!seen.has(event.data.taskId) && event.type !== "TaskCreated") missing.add(event.data.taskId);
    seen.add(event.data.taskId);
  }
  if (missing.size > 0) {
    const rows = await db.selectFrom("tasks").selectAll().where("task_id", "in", [...missing]).execute();
    for (const row of rows) {
      folded.set(row.task_id, {
        state: stateOf(row),
        createdAt: row.created_at,
        updatedAt: row.updated_at,
        durationMs: Number(row.duration_ms),
        version: row.version,
        position: row.position,
        isNew: false,
      });
    }
  }

  for (const { recorded: r, event } of parsed) {
    const id = event.data.taskId;
    const where = `${r.type} ${r.id} (stream ${r.streamId}@${r.streamPosition})`;
    let entry = folded.get(id);
    if (event.type === "TaskCreated") {
      if (entry || missing.has(id)) throw new Error(`${where}: task ${id} exists already in the read model`);
      const state = evolveTask({ exists: false }, event);
      if (!state.exists) throw new Error(`${where}: TaskCreated did not create the task`);
      entry = {
        state,
        createdAt: r.occurredAt,
        updatedAt: r.occurredAt,
        durationMs: Math.max(0, Date.parse(event.data.deadline) - r.occurredAt.getTime()),
        version: r.streamPosition,
        position: formatPosition(r),
        isNew: true,
      };
      folded.set(id, entry);
      continue;
    }
    if (!entry) throw new Error(`${where}: task ${id} is not in the read model`);
    const next = evolveTask(entry.state, event);
    if (!next.exists) throw new Error(`${where}: the task vanished`);
    entry.state = next;
    entry.updatedAt = r.occurredAt;
    entry.version = r.streamPosition;
    entry.position = formatPosition(r);
  }

  const created = [...folded.values()].filter((f) => f.isNew).map(rowOf);
  const changed = [...folded.values()].filter((f) => !f.isNew).map(rowOf);
  if (created.length > 0) await db.insertInto("tasks").values(created).execute();
  if (changed.length > 0) {
    await db
      .insertInto("tasks")
      .values(changed)
      .onConflict((oc) =>
        oc.column("task_id").doUpdateSet((eb) => ({
          status: eb.ref("excluded.status"),
          current_step: eb.ref("excluded.current_step"),
          steps: eb.ref("excluded.steps"),
          blocked: eb.ref("excluded.blocked"),
          failure: eb.ref("excluded.failure"),
          cancellation_reason: eb.ref("excluded.cancellation_reason"),
          deadline: eb.ref("excluded.deadline"),
          updated_at: eb.ref("excluded.updated_at"),
          version: eb.ref("excluded.version"),
          position: eb.ref("excluded.position"),
        })),
      )
      .execute();
  }
}

function rowOf(f: Folded) {
  const s = f.state;
  return {
    task_id: s.taskId,
    kind: s.kind,
    title: s.title,
    resource_type: s.resource.type,
    resource_id: s.resource.id,
    tenant_id: s.scope.tenantId,
    project_id: s.scope.projectId,
    environment_id: s.scope.environmentId,
    status: s.status,
    current_step: currentStep(s)?.name ?? null,
    steps: JSON.stringify(s.steps),
    blocked: JSON.stringify(s.blocked),
    failure: JSON.stringify(s.failure),
    cancellation_reason: s.cancellation?.reason ?? null,
    deadline: new Date(s.deadline),
    duration_ms: f.durationMs,
    max_attempts: s.maxAttempts,
    input: JSON.stringify(s.input),
    created_at: f.createdAt,
    updated_at: f.updatedAt,
    version: f.version,
    position: f.position,
  };
}

/** A row back into the aggregate's state (what evolveTask folds on). */
export function stateOf(row: TaskRow): ExistingTask {
  return {
    exists: true,
    taskId: row.task_id,
    kind: row.kind,
    title: row.title,
    resource: { type: row.resource_type, id: row.resource_id },
    scope: { tenantId: row.tenant_id, projectId: row.project_id, environmentId: row.environment_id },
    deadline: row.deadline.toISOString(),
    maxAttempts: row.max_attempts,
    input: row.input,
    status: row.status,
    steps: row.steps,
    blocked: row.blocked,
    cancellation: row.cancellation_reason === null ? null : { reason: row.cancellation_reason },
    failure: row.failure,
  };
}

/** Validates against the published schema; a version without an upcaster stops the projection. */
export function parseTaskEvent(recorded: RecordedEvent): TaskEvent | undefined {
  if (!Object.hasOwn(taskEventSchemas, recorded.type)) return undefined;
  const entry = taskEventSchemas[recorded.type as TaskEventType];
  if (recorded.schemaVersion !== entry.schemaVersion) {
    throw new Error(
      `${recorded.type} ${recorded.id}: schema version ${recorded.schemaVersion}, the tasks projection reads ${entry.schemaVersion} (upcaster missing?)`,
    );
  }
  return { type: recorded.type, data: entry.schema.parse(recorded.data) } as TaskEvent;
}
