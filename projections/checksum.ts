import { createHash } from "node:crypto";
import { sql, type Kysely, type Transaction } from "kysely";
import { readCheckpoint, readRebuild } from "./checkpoints.ts";
import { formatPosition } from "../adapters/eventstore/position.ts";
import { liveSchema, rebuildSchema, type AnyProjection } from "./projection.ts";

/**
 * An order-independent fingerprint of a projection's rows, so a DR drill can
 * prove that a model rebuilt from the log equals the one that was served.
 *
 * Per table: the row count and, over every row, the sums of the two 64-bit
 * halves of md5(row_to_json(row)) taken as signed integers and added as
 * numeric (no overflow). Sums do not depend on row order or physical layout,
 * so a table filled in another order, vacuumed or rebuilt gives the same
 * numbers iff it holds the same multiset of rows. The projection's digest is
 * SHA-256 over the per-table lines, tables in name order.
 *
 * row_to_json renders timestamptz in the session time zone, so the checksum
 * runs with TimeZone = UTC (and full float precision); both sides of a
 * comparison must use the same table definitions (same projection version),
 * since column order is part of each row's JSON.
 */
export interface TableChecksum {
  readonly table: string;
  readonly rows: number;
  /** Decimal sums of the high and low 64-bit halves of each row's md5. */
  readonly sumHigh: string;
  readonly sumLow: string;
}

export interface ProjectionChecksum {
  readonly projection: string;
  readonly schema: string;
  readonly tables: readonly TableChecksum[];
  /** Hex SHA-256 over the table checksums: compare this. */
  readonly digest: string;
}

async function tableChecksum(trx: Transaction<any>, schema: string, table: string): Promise<TableChecksum> {
  const { rows } = await sql<{ rows: string; sum_high: string; sum_low: string }>`
    select count(*)::text as rows,
           coalesce(sum(('x' || substr(m.h, 1, 16))::bit(64)::bigint::numeric), 0)::text as sum_high,
           coalesce(sum(('x' || substr(m.h, 17, 16))::bit(64)::bigint::numeric), 0)::text as sum_low
      from ${sql.table(`${schema}.${table}`)} as t
      cross join lateral (select md5(row_to_json(t)::text) as h) as m`.execute(trx);
  const row = rows[0]!;
  return { table, rows: Number(row.rows), sumHigh: row.sum_high, sumLow: row.sum_low };
}

/** Inside an open transaction (its snapshot is what gets hashed); sets TimeZone for the rest of it. */
export async function checksumIn(trx: Transaction<any>, projection: AnyProjection, schema: string): Promise<ProjectionChecksum> {
  await sql`set local timezone to 'UTC'`.execute(trx);
  await sql`set local extra_float_digits to 3`.execute(trx);
  const tables: TableChecksum[] = [];
  for (const table of [...projection.tables].sort()) tables.push(await tableChecksum(trx, schema, table));
  const hash = createHash("sha256");
  for (const t of tables) hash.update(`${t.table}\t${t.rows}\t${t.sumHigh}\t${t.sumLow}\n`);
  return { projection: projection.name, schema, tables, digest: hash.digest("hex") };
}

export interface ChecksumOptions {
  /** Which schema to hash; the live one by default (rebuild.ts hashes `<name>__rebuild` too). */
  readonly schema?: string;
}

/**
 * Checksum of one projection's schema from a single snapshot, with the
 * position that schema had reached in that same snapshot (the live checkpoint,
 * or the rebuild's progress for `<name>__rebuild`; null for any other schema).
 * Two checksums are comparable only when their positions are equal.
 */
export async function projectionChecksum(
  db: Kysely<any>,
  projection: AnyProjection,
  options: ChecksumOptions = {},
): Promise<ProjectionChecksum & { readonly position: string | null }> {
  return db
    .transaction()
    .setIsolationLevel("repeatable read")
    .execute(async (trx) => {
      const schema = options.schema ?? liveSchema(projection);
      const checksum = await checksumIn(trx, projection, schema);
      const progress =
        schema === liveSchema(projection)
          ? await readCheckpoint(trx, projection.name)
          : schema === rebuildSchema(projection)
            ? await readRebuild(trx, projection.name)
            : undefined;
      return { ...checksum, position: progress ? formatPosition(progress.position) : null };
    });
}

export function sameChecksum(a: Pick<ProjectionChecksum, "digest">, b: Pick<ProjectionChecksum, "digest">): boolean {
  return a.digest === b.digest;
}
