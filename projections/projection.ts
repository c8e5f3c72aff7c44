import type { Kysely } from "kysely";
import type { RecordedEvent } from "../adapters/eventstore/port.ts";

/** What a handler gets besides the event: where its tables are right now (live or rebuild schema). */
export interface ProjectionContext {
  readonly schema: string;
}

/**
 * A read model: a named set of tables in its own Postgres schema (named like
 * the projection) and a handler that turns each event into writes.
 *
 * Rules a handler must keep, because a rebuild must reproduce the served model
 * byte for byte (see checksum.ts):
 * - deterministic: time comes from `event.occurredAt`, ids from the event; no
 *   now(), no random, no reads of anything outside its own tables;
 * - writes only through `db`, which is a transaction already bound to the
 *   projection's schema with `withSchema` (use the query builder; raw `sql`
 *   must name tables with `sql.table(\`${context.schema}.<table>\`)`);
 * - ignores event types it does not know (or lists the ones it wants in `eventTypes`).
 * The runner applies each event exactly once, in log order, so handlers need
 * not be idempotent; a plain insert that fails on a duplicate is a useful alarm.
 * `handleBatch`, when given, is used instead of `handle` and keeps the same rules.
 */
export interface Projection<Tables = any> {
  /** Also the schema name: lowercase letters, digits and single underscores. */
  readonly name: string;
  /** Bump when the tables or the handler change meaning: the projection is rebuilt on start. */
  readonly version: number;
  /** Every table the projection owns, in its schema (the checksum covers exactly these). */
  readonly tables: readonly string[];
  /** Creates the tables (and indexes) in `schema`, which exists and is empty. */
  createTables(db: Kysely<any>, schema: string): Promise<void>;
  handle(db: Kysely<Tables>, event: RecordedEvent, context: ProjectionContext): Promise<void>;
  /**
   * Optional, for speed: applies a whole batch (the events `handle` would get,
   * already filtered by `eventTypes`, in log order, never empty) with a few
   * statements instead of several per event. It must leave exactly the rows
   * that calling `handle` on each event in turn would leave, and fail whenever
   * that would fail (the batch is rolled back either way), so a model is the
   * same whatever the batch boundaries: the live runner and a rebuild cut the
   * log differently and the checksum compares them. When absent, the runner
   * and rebuild call `handle` per event.
   */
  handleBatch?(db: Kysely<Tables>, events: readonly RecordedEvent[], context: ProjectionContext): Promise<void>;
  /** When given, only these event types reach the handler (the checkpoint still passes the others). */
  readonly eventTypes?: readonly string[];
}

export type AnyProjection = Projection<any>;

export const REBUILD_SUFFIX = "__rebuild";
export const OLD_SUFFIX = "__old";

const NAME_PATTERN = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;
/** Postgres identifiers are at most 63 bytes and the rebuild schema appends a suffix. */
const MAX_NAME_LENGTH = 63 - REBUILD_SUFFIX.length;
const RESERVED = new Set(["projections", "eventstore", "public", "information_schema"]);

export class InvalidProjectionError extends Error {
  override readonly name = "InvalidProjectionError";
}

export function validateProjection(projection: AnyProjection): void {
  const { name, version, tables } = projection;
  if (!NAME_PATTERN.test(name) || name.length > MAX_NAME_LENGTH || RESERVED.has(name) || name.startsWith("pg_")) {
    throw new InvalidProjectionError(
      `projection name ${JSON.stringify(name)} must be lowercase letters, digits and single underscores, ` +
        `at most ${MAX_NAME_LENGTH} characters, not reserved`,
    );
  }
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new InvalidProjectionError(`projection ${name}: version must be a positive integer`);
  }
  if (tables.length === 0) throw new InvalidProjectionError(`projection ${name}: lists no tables`);
  for (const table of tables) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(table)) {
      throw new InvalidProjectionError(`projection ${name}: table name ${JSON.stringify(table)} is not a plain identifier`);
    }
  }
  if (new Set(tables).size !== tables.length) throw new InvalidProjectionError(`projection ${name}: tables listed twice`);
}

export function validateProjections(projections: readonly AnyProjection[]): void {
  const seen = new Set<string>();
  for (const projection of projections) {
    validateProjection(projection);
    if (seen.has(projection.name)) throw new InvalidProjectionError(`projection ${projection.name} is registered twice`);
    seen.add(projection.name);
  }
}

/** Checks the definition once, where it is declared. */
export function defineProjection<Tables>(projection: Projection<Tables>): Projection<Tables> {
  validateProjection(projection);
  return projection;
}

/** The schema the API reads. */
export function liveSchema(projection: Pick<AnyProjection, "name">): string {
  return projection.name;
}

export function rebuildSchema(projection: Pick<AnyProjection, "name">): string {
  return `${projection.name}${REBUILD_SUFFIX}`;
}

export function oldSchema(projection: Pick<AnyProjection, "name">): string {
  return `${projection.name}${OLD_SUFFIX}`;
}

export function acceptsEvent(projection: AnyProjection, event: RecordedEvent): boolean {
  return projection.eventTypes === undefined || projection.eventTypes.includes(event.type);
}
