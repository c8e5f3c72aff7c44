import type pg from "pg";
import type { EventMetadata } from "../port.ts";

/** An event ready for the database: id assigned, JSON normalized, content digest computed. */
export interface PreparedEvent {
  readonly id: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly data: unknown;
  readonly metadata: EventMetadata;
  readonly occurredAt: Date;
  readonly digest: Buffer;
}

/** Expected-version codes understood by eventstore.append_batch. */
export const EXPECT_NO_STREAM = -1n;
export const EXPECT_ANY = -2n;
export const EXPECT_EXISTS = -3n;

export interface BatchedAppend {
  readonly streamId: string;
  readonly expected: bigint;
  readonly events: readonly PreparedEvent[];
}

export interface AppendOutcome {
  readonly status: "ok" | "replayed" | "conflict" | "idempotency_violation";
  /** The stream's version; null when the stream does not exist. */
  readonly version: number | null;
  readonly transactionId: bigint | null;
  readonly globalPositions: readonly bigint[];
  readonly firstPosition: number | null;
}

interface Pending extends BatchedAppend {
  resolve(outcome: AppendOutcome): void;
  reject(error: unknown): void;
}

interface OutcomeRow {
  out_index: number;
  out_status: AppendOutcome["status"];
  out_version: string | null;
  out_transaction_id: string | null;
  out_global_positions: string[] | null;
  out_first_position: string | null;
}

const APPEND_SQL = `select out_index, out_status, out_version, out_transaction_id::text as out_transaction_id,
  out_global_positions, out_first_position
  from eventstore.append_batch($1::text[], $2::bigint[], $3::int[], $4::uuid[], $5::text[], $6::int[],
                               $7::jsonb[], $8::jsonb[], $9::text[], $10::timestamptz[], $11::bytea[],
                               $12::int[], $13::int[])`;

export interface AppendBatcherOptions {
  /** Batches in flight at once; each holds one connection while it commits. */
  readonly maxConcurrentBatches?: number;
  /** Appends are grouped until this many events; a larger single append still goes alone. */
  readonly maxEventsPerBatch?: number;
}

/**
 * Group commit. Appends that arrive while earlier batches are committing are
 * sent together as one statement in one transaction, so N concurrent writers
 * pay for far fewer than N commits. Each append keeps its own optimistic
 * concurrency check and its own outcome: one conflict fails only its caller.
 * A lone writer never waits: with nothing in flight its append goes at once.
 */
export class AppendBatcher {
  private readonly queue: Pending[] = [];
  private inFlight = 0;
  private readonly maxConcurrent: number;
  private readonly maxEvents: number;

  constructor(
    private readonly pool: pg.Pool,
    options: AppendBatcherOptions = {},
  ) {
    this.maxConcurrent = options.maxConcurrentBatches ?? 4;
    this.maxEvents = options.maxEventsPerBatch ?? 5_000;
  }

  submit(append: BatchedAppend): Promise<AppendOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ...append, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxConcurrent && this.queue.length > 0) {
      const batch = this.takeBatch();
      this.inFlight += 1;
      void this.commit(batch).finally(() => {
        this.inFlight -= 1;
        this.pump();
      });
    }
  }

  private takeBatch(): Pending[] {
    const batch: Pending[] = [this.queue.shift()!];
    let events = batch[0]!.events.length;
    while (this.queue.length > 0 && events + this.queue[0]!.events.length <= this.maxEvents) {
      const next = this.queue.shift()!;
      events += next.events.length;
      batch.push(next);
    }
    // Every batch locks stream rows in stream-id order, so concurrent batches cannot deadlock.
    // The sort is stable: appends to one stream keep their arrival order.
    return batch.sort((a, b) => (a.streamId < b.streamId ? -1 : a.streamId > b.streamId ? 1 : 0));
  }

  private async commit(batch: Pending[]): Promise<void> {
    try {
      const outcomes = await this.execute(batch);
      batch.forEach((append, index) => append.resolve(outcomes[index]!));
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      // One bad append (or a deadlock with an outside writer) must not fail its neighbours:
      // retry each on its own; whatever fails now fails only for its caller.
      for (const append of batch) {
        try {
          append.resolve((await this.execute([append]))[0]!);
        } catch (singleError) {
          append.reject(singleError);
        }
      }
    }
  }

  private execute(batch: readonly BatchedAppend[]): Promise<AppendOutcome[]> {
    return executeAppendBatch(this.pool, batch);
  }
}

/**
 * Runs appends through eventstore.append_batch on any client: the pool, or a
 * caller's open transaction. The batch must be sorted by stream id (see takeBatch).
 */
export async function executeAppendBatch(
  client: Pick<pg.ClientBase, "query">,
  batch: readonly BatchedAppend[],
): Promise<AppendOutcome[]> {
  const streamIds: string[] = [];
  const expected: string[] = [];
  const counts: number[] = [];
  const ids: string[] = [];
  const types: string[] = [];
  const versions: number[] = [];
  const data: string[] = [];
  const metadata: string[] = [];
  const tenants: string[] = [];
  const occurred: string[] = [];
  const digests: Buffer[] = [];
  const eventAppend: number[] = [];
  const eventIndex: number[] = [];
  for (const [appendIndex, append] of batch.entries()) {
    streamIds.push(append.streamId);
    expected.push(append.expected.toString());
    counts.push(append.events.length);
    for (const [index, event] of append.events.entries()) {
      eventAppend.push(appendIndex + 1);
      eventIndex.push(index);
      ids.push(event.id);
      types.push(event.type);
      versions.push(event.schemaVersion);
      data.push(JSON.stringify(event.data));
      metadata.push(JSON.stringify(event.metadata));
      tenants.push(event.metadata.scope.tenantId);
      occurred.push(event.occurredAt.toISOString());
      digests.push(event.digest);
    }
  }
  const { rows } = await client.query<OutcomeRow>(APPEND_SQL, [
    streamIds, expected, counts, ids, types, versions, data, metadata, tenants, occurred, digests, eventAppend, eventIndex,
  ]);
  if (rows.length !== batch.length) throw new Error(`append_batch answered ${rows.length} outcomes for ${batch.length} appends`);
  return rows
    .sort((a, b) => a.out_index - b.out_index)
    .map((row) => ({
      status: row.out_status,
      version: row.out_version === null || row.out_version === "-1" ? null : Number(row.out_version),
      transactionId: row.out_transaction_id === null ? null : BigInt(row.out_transaction_id),
      globalPositions: (row.out_global_positions ?? []).map((p) => BigInt(p)),
      firstPosition: row.out_first_position === null ? null : Number(row.out_first_position),
    }));
}
