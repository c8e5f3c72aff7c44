import { createHash } from "node:crypto";
import type pg from "pg";
import { chainHash, contentDigest, EMPTY_HASH } from "../hashing.ts";
import type { EventMetadata, IntegrityProblem, IntegrityReport, LogPosition } from "../port.ts";

interface ChainRow {
  stream_id: string;
  stream_position: string;
  event_id: string;
  event_type: string;
  schema_version: number;
  data: unknown;
  metadata: EventMetadata;
  occurred_at: Date;
  content_digest: Buffer;
  hash: Buffer;
}

const CHAIN_COLUMNS = `stream_id, stream_position, event_id, event_type, schema_version, data, metadata,
  occurred_at, content_digest, hash`;
const PAGE = 5_000;

/** Walks one stream's events in order, recomputing digests and the chain from the stored rows. */
class StreamChecker {
  private expectedPosition = 0;
  private previous: Buffer = EMPTY_HASH;
  events = 0;

  constructor(
    readonly streamId: string,
    private readonly problems: IntegrityProblem[],
  ) {}

  check(row: ChainRow): void {
    const position = Number(row.stream_position);
    this.events += 1;
    if (position !== this.expectedPosition) {
      this.problems.push({
        streamId: this.streamId,
        streamPosition: position,
        kind: "position_gap",
        detail: `expected position ${this.expectedPosition}, found ${position}: events are missing`,
      });
    }
    const digest = contentDigest({
      streamId: row.stream_id,
      eventId: row.event_id,
      type: row.event_type,
      schemaVersion: row.schema_version,
      occurredAt: row.occurred_at,
      data: row.data,
      metadata: row.metadata,
    });
    if (!digest.equals(row.content_digest)) {
      this.problems.push({
        streamId: this.streamId,
        streamPosition: position,
        kind: "content_mismatch",
        detail: `event ${row.event_id} (${row.event_type}) does not match the digest it was written with`,
      });
    }
    const expected = chainHash(this.previous, position, row.content_digest);
    if (!expected.equals(row.hash)) {
      this.problems.push({
        streamId: this.streamId,
        streamPosition: position,
        kind: "chain_broken",
        detail: `hash of event ${row.event_id} does not follow from its predecessor`,
      });
    }
    this.previous = row.hash;
    this.expectedPosition = position + 1;
  }

  checkHead(head: { version: string; last_hash: Buffer } | undefined): void {
    const lastPosition = this.expectedPosition - 1;
    if (!head) {
      this.problems.push({ streamId: this.streamId, kind: "head_mismatch", detail: "events exist but the stream head is missing" });
      return;
    }
    if (Number(head.version) !== lastPosition || !head.last_hash.equals(this.previous)) {
      this.problems.push({
        streamId: this.streamId,
        kind: "head_mismatch",
        detail: `stream head says version ${head.version}, events end at ${lastPosition}${head.last_hash.equals(this.previous) ? "" : " with a different hash"}`,
      });
    }
  }
}

export async function verifyStream(pool: pg.Pool, streamId: string): Promise<IntegrityReport> {
  const problems: IntegrityProblem[] = [];
  const checker = new StreamChecker(streamId, problems);
  const { rows } = await pool.query<ChainRow>(
    `select ${CHAIN_COLUMNS} from eventstore.events where stream_id = $1 order by stream_position`,
    [streamId],
  );
  for (const row of rows) checker.check(row);
  const head = await pool.query<{ version: string; last_hash: Buffer }>(
    "select version, last_hash from eventstore.streams where stream_id = $1 and version >= 0",
    [streamId],
  );
  if (rows.length > 0 || head.rows[0]) checker.checkHead(head.rows[0]);
  return { ok: problems.length === 0, streamsChecked: rows.length > 0 ? 1 : 0, eventsChecked: rows.length, problems };
}

/** Every stream's chain and head, then every seal over the whole log. */
export async function verifyLog(pool: pg.Pool): Promise<IntegrityReport> {
  const problems: IntegrityProblem[] = [];
  const heads = new Map<string, { version: string; last_hash: Buffer }>();
  const headRows = await pool.query<{ stream_id: string; version: string; last_hash: Buffer }>(
    "select stream_id, version, last_hash from eventstore.streams where version >= 0",
  );
  for (const row of headRows.rows) heads.set(row.stream_id, row);

  let streams = 0;
  let events = 0;
  let current: StreamChecker | undefined;
  const finish = () => {
    if (!current) return;
    current.checkHead(heads.get(current.streamId));
    heads.delete(current.streamId);
    streams += 1;
    events += current.events;
  };
  let after: { streamId: string; position: string } | undefined;
  for (;;) {
    const { rows } = await pool.query<ChainRow>(
      after
        ? `select ${CHAIN_COLUMNS} from eventstore.events where (stream_id, stream_position) > ($1, $2::bigint)
            order by stream_id, stream_position limit ${PAGE}`
        : `select ${CHAIN_COLUMNS} from eventstore.events order by stream_id, stream_position limit ${PAGE}`,
      after ? [after.streamId, after.position] : [],
    );
    for (const row of rows) {
      if (current?.streamId !== row.stream_id) {
        finish();
        current = new StreamChecker(row.stream_id, problems);
      }
      current.check(row);
    }
    if (rows.length < PAGE) break;
    const last = rows.at(-1)!;
    after = { streamId: last.stream_id, position: last.stream_position };
  }
  finish();
  for (const streamId of heads.keys()) {
    problems.push({ streamId, kind: "head_mismatch", detail: "the stream head exists but all its events are gone" });
  }
  problems.push(...(await verifySeals(pool)));
  return { ok: problems.length === 0, streamsChecked: streams, eventsChecked: events, problems };
}

export interface Seal {
  readonly sealId: bigint;
  readonly through: LogPosition;
  readonly eventCount: bigint;
  readonly digest: string;
}

interface SealRow {
  seal_id: string;
  through_transaction_id: string;
  through_global_position: string;
  event_count: string;
  digest: Buffer;
}

/**
 * Folds the hashes of all events after one cursor up to another (log order) onto a digest.
 * A seal's digest = SHA-256 over (previous seal's digest, then every covered event's hash).
 */
async function digestRange(
  client: pg.Pool | pg.PoolClient,
  previousDigest: Buffer,
  after: LogPosition,
  through: LogPosition,
): Promise<{ digest: Buffer; count: bigint }> {
  const hash = createHash("sha256").update(previousDigest);
  let count = 0n;
  let cursor = after;
  for (;;) {
    const { rows } = await client.query<{ txid: string; global_position: string; hash: Buffer }>(
      `select transaction_id::text as txid, global_position, hash from eventstore.events
        where (transaction_id, global_position) > ($1::text::xid8, $2::bigint)
          and (transaction_id, global_position) <= ($3::text::xid8, $4::bigint)
        order by transaction_id, global_position limit ${PAGE}`,
      [cursor.transactionId.toString(), cursor.globalPosition.toString(), through.transactionId.toString(), through.globalPosition.toString()],
    );
    for (const row of rows) hash.update(row.hash);
    count += BigInt(rows.length);
    if (rows.length < PAGE) break;
    const last = rows.at(-1)!;
    cursor = { transactionId: BigInt(last.txid), globalPosition: BigInt(last.global_position) };
  }
  return { digest: hash.digest(), count };
}

function sealFromRow(row: SealRow): Seal {
  return {
    sealId: BigInt(row.seal_id),
    through: { transactionId: BigInt(row.through_transaction_id), globalPosition: BigInt(row.through_global_position) },
    eventCount: BigInt(row.event_count),
    digest: row.digest.toString("hex"),
  };
}

const SEAL_COLUMNS = `seal_id, through_transaction_id::text as through_transaction_id, through_global_position, event_count, digest`;

export async function sealLog(pool: pg.Pool): Promise<Seal | null> {
  const client = await pool.connect();
  try {
    await client.query("begin");
    // One sealer at a time; a second one waits and then seals only what is new.
    await client.query("select pg_advisory_xact_lock(hashtext('eventstore.seal'))");
    const last = (await client.query<SealRow>(`select ${SEAL_COLUMNS} from eventstore.seals order by seal_id desc limit 1`)).rows[0];
    const head = (
      await client.query<{ txid: string; global_position: string }>(
        `select transaction_id::text as txid, global_position from eventstore.events
          where transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          order by transaction_id desc, global_position desc limit 1`,
      )
    ).rows[0];
    const previous = last ? sealFromRow(last) : undefined;
    const after = previous?.through ?? { transactionId: 0n, globalPosition: 0n };
    if (!head) {
      await client.query("commit");
      return null;
    }
    const through = { transactionId: BigInt(head.txid), globalPosition: BigInt(head.global_position) };
    if (through.transactionId === after.transactionId && through.globalPosition === after.globalPosition) {
      await client.query("commit");
      return null;
    }
    const { digest, count } = await digestRange(client, last?.digest ?? EMPTY_HASH, after, through);
    const inserted = await client.query<SealRow>(
      `insert into eventstore.seals (through_transaction_id, through_global_position, event_count, digest)
        values ($1::text::xid8, $2, $3, $4) returning ${SEAL_COLUMNS}`,
      [through.transactionId.toString(), through.globalPosition.toString(), count.toString(), digest],
    );
    await client.query("commit");
    return sealFromRow(inserted.rows[0]!);
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

async function verifySeals(pool: pg.Pool): Promise<IntegrityProblem[]> {
  const problems: IntegrityProblem[] = [];
  const { rows } = await pool.query<SealRow>(`select ${SEAL_COLUMNS} from eventstore.seals order by seal_id`);
  let previousDigest: Buffer = EMPTY_HASH;
  let after: LogPosition = { transactionId: 0n, globalPosition: 0n };
  for (const row of rows) {
    const seal = sealFromRow(row);
    const { digest, count } = await digestRange(pool, previousDigest, after, seal.through);
    if (!digest.equals(row.digest) || count !== seal.eventCount) {
      problems.push({
        streamId: "$all",
        kind: "seal_mismatch",
        detail: `seal ${seal.sealId} covered ${seal.eventCount} events; the log now gives ${count}${digest.equals(row.digest) ? "" : " with a different digest"}`,
      });
    }
    previousDigest = row.digest;
    after = seal.through;
  }
  return problems;
}
