import type pg from "pg";

/** An event ready for the database: id assigned, JSON serialized once, content digest computed. */
export interface PreparedEvent {
  readonly id: string;
  readonly type: string;
  readonly schemaVersion: number;
  /** JSON text, exactly what is stored and what the digest was computed over. */
  readonly dataJson: string;
  readonly metadataJson: string;
  readonly tenantId: string;
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

/** A row of append_batch: an append's outcome (out_index set) or a stored event's positions. */
interface OutcomeRow {
  out_index: number | null;
  out_status: AppendOutcome["status"] | null;
  out_version: string | null;
  out_event_id: string | null;
  out_stream_position: string | null;
  out_global_position: string | null;
  out_transaction_id: string | null;
}

const APPEND_SQL = `select out_index, out_status, out_version, out_event_id, out_stream_position,
  out_global_position, out_transaction_id::text as out_transaction_id
  from eventstore.append_batch($1::text[], $2::bigint[], $3::int[], $4::uuid[], $5::text[], $6::int[],
                               $7::jsonb[], $8::jsonb[], $9::text[], $10::timestamptz[], $11::bytea[],
                               $12::int[], $13::int[], $14::boolean)`;

export interface AppendBatcherOptions {
  /** Batches in flight at once; each holds one connection while it commits. */
  readonly maxConcurrentBatches?: number;
  /** Appends are grouped until this many events; a larger single append still goes alone. */
  readonly maxEventsPerBatch?: number;
  /** Called after a batch that wrote events has committed (readers are signalled from here). */
  readonly onCommitted?: () => void;
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
  private readonly onCommitted: () => void;

  constructor(
    private readonly pool: pg.Pool,
    options: AppendBatcherOptions = {},
  ) {
    this.maxConcurrent = options.maxConcurrentBatches ?? 4;
    this.onCommitted = options.onCommitted ?? (() => {});
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

  private async execute(batch: readonly BatchedAppend[]): Promise<AppendOutcome[]> {
    const outcomes = await executeAppendBatch(this.pool, batch, { notifyAtCommit: false });
    if (outcomes.some((o) => o.status === "ok" && o.globalPositions.length > 0)) this.onCommitted();
    return outcomes;
  }
}

/**
 * Runs appends through eventstore.append_batch on any client: the pool, or a
 * caller's open transaction. The batch must be sorted by stream id (see takeBatch).
 */
export async function executeAppendBatch(
  client: Pick<pg.ClientBase, "query">,
  batch: readonly BatchedAppend[],
  options: { notifyAtCommit: boolean },
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
      data.push(event.dataJson);
      metadata.push(event.metadataJson);
      tenants.push(event.tenantId);
      occurred.push(event.occurredAt.toISOString());
      digests.push(event.digest);
    }
  }
  const { rows } = await client.query<OutcomeRow>(APPEND_SQL, [
    streamIds, expected, counts, ids, types, versions, data, metadata, tenants, occurred, digests, eventAppend, eventIndex, options.notifyAtCommit,
  ]);
  const stored = new Map<string, { streamPosition: number; globalPosition: bigint; transactionId: bigint }>();
  const statuses: OutcomeRow[] = [];
  for (const row of rows) {
    if (row.out_index !== null) statuses[row.out_index - 1] = row;
    else stored.set(row.out_event_id!, {
      streamPosition: Number(row.out_stream_position),
      globalPosition: BigInt(row.out_global_position!),
      transactionId: BigInt(row.out_transaction_id!),
    });
  }
  return batch.map((append, index) => {
    const row = statuses[index];
    if (!row) throw new Error(`append_batch gave no outcome for append ${index + 1} of ${batch.length}`);
    const status = row.out_status!;
    const version = row.out_version === null || row.out_version === "-1" ? null : Number(row.out_version);
    if (status !== "ok" && status !== "replayed") {
      return { status, version, transactionId: null, globalPositions: [], firstPosition: null };
    }
    const events = append.events.map((event) => {
      const found = stored.get(event.id);
      if (!found) throw new Error(`append_batch did not report event ${event.id}`);
      return found;
    });
    const last = events.at(-1);
    return {
      status,
      // A replay answers with the version its original append left, not the stream's current one.
      version: status === "replayed" && last ? last.streamPosition : version,
      transactionId: last?.transactionId ?? null,
      globalPositions: events.map((e) => e.globalPosition),
      firstPosition: events[0]?.streamPosition ?? null,
    };
  });
}
