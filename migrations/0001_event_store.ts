import { sql, type Kysely } from "kysely";

/**
 * The event log. Ordering is (transaction_id, global_position): a reader reads
 * only rows whose writing transaction is older than every transaction still in
 * flight, so late commits can never be skipped (see adapters/eventstore/postgres).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists eventstore`.execute(db);

  await sql`
    create table eventstore.events (
      global_position bigint generated always as identity primary key,
      transaction_id xid8 not null default pg_current_xact_id(),
      event_id uuid not null,
      stream_id text not null,
      stream_position bigint not null,
      event_type text not null,
      schema_version integer not null,
      data jsonb not null,
      metadata jsonb not null,
      tenant_id text not null,
      occurred_at timestamptz not null,
      recorded_at timestamptz not null default now(),
      content_digest bytea not null,
      hash bytea not null
    )`.execute(db);
  await sql`create unique index events_stream_position on eventstore.events (stream_id, stream_position)`.execute(db);
  await sql`create unique index events_event_id on eventstore.events (event_id)`.execute(db);
  await sql`create index events_log_order on eventstore.events (transaction_id, global_position)`.execute(db);
  await sql`create index events_tenant on eventstore.events (tenant_id, transaction_id, global_position)`.execute(db);

  // One row per stream: the lock that serializes its writers, its version and the head of its hash chain.
  await sql`
    create table eventstore.streams (
      stream_id text primary key,
      version bigint not null,
      last_hash bytea not null
    )`.execute(db);

  // Seals anchor the whole log: each covers every event up to a cursor, chained to the previous seal.
  await sql`
    create table eventstore.seals (
      seal_id bigint generated always as identity primary key,
      through_transaction_id xid8 not null,
      through_global_position bigint not null,
      event_count bigint not null,
      digest bytea not null,
      sealed_at timestamptz not null default now()
    )`.execute(db);

  // The log is append-only. Tampering needs a superuser who disables this; the hash chain catches that.
  await sql`
    create function eventstore.refuse_change() returns trigger language plpgsql as $$
    begin
      raise exception 'eventstore.events is append-only (% refused)', tg_op using errcode = 'insufficient_privilege';
    end $$`.execute(db);
  await sql`
    create trigger events_append_only before update or delete on eventstore.events
    for each row execute function eventstore.refuse_change()`.execute(db);
  await sql`
    create trigger events_no_truncate before truncate on eventstore.events
    for each statement execute function eventstore.refuse_change()`.execute(db);

  /*
   * Appends a batch of independent appends in one transaction (group commit).
   * Each append is checked on its own: a conflict or an idempotency violation
   * skips that append and is reported in its row; the others still commit.
   * Expected version codes: >= 0 exact, -1 no_stream, -2 any, -3 exists.
   */
  await sql`
    create function eventstore.append_batch(
      p_stream_ids text[], p_expected bigint[], p_counts integer[],
      p_event_ids uuid[], p_types text[], p_schema_versions integer[], p_data jsonb[],
      p_metadata jsonb[], p_tenant_ids text[], p_occurred_at timestamptz[], p_digests bytea[]
    ) returns table (
      out_index integer, out_status text, out_version bigint, out_transaction_id xid8,
      out_global_positions bigint[], out_first_position bigint
    ) language plpgsql as $$
    declare
      n integer := coalesce(array_length(p_stream_ids, 1), 0);
      lo integer := 1;
      hi integer;
      v_version bigint;
      v_hash bytea;
      v_exists boolean;
      v_expected bigint;
      v_found integer;
      v_same integer;
      v_hashes bytea[];
      v_wrote boolean := false;
    begin
      for i in 1..n loop
        hi := lo + p_counts[i] - 1;
        out_index := i;
        out_global_positions := null;
        out_first_position := null;
        out_transaction_id := null;
        v_expected := p_expected[i];

        select s.version, s.last_hash into v_version, v_hash
          from eventstore.streams s where s.stream_id = p_stream_ids[i] for update;
        if not found and v_expected in (-1, -2) then
          -- A concurrent creator makes us wait here, then we re-read its committed head.
          insert into eventstore.streams (stream_id, version, last_hash)
            values (p_stream_ids[i], -1, '\\x') on conflict (stream_id) do nothing;
          select s.version, s.last_hash into v_version, v_hash
            from eventstore.streams s where s.stream_id = p_stream_ids[i] for update;
        end if;
        v_exists := coalesce(v_version, -1) >= 0;

        -- A retry of an append that already committed returns the original positions.
        select count(*), count(*) filter (where e.stream_id = p_stream_ids[i])
          into v_found, v_same
          from eventstore.events e where e.event_id = any (p_event_ids[lo:hi]);
        if v_found > 0 then
          if v_found = p_counts[i] and v_same = v_found then
            select array_agg(e.global_position order by e.stream_position), min(e.stream_position),
                   max(e.stream_position), max(e.transaction_id)
              into out_global_positions, out_first_position, out_version, out_transaction_id
              from eventstore.events e where e.event_id = any (p_event_ids[lo:hi]);
            out_status := 'replayed';
          else
            out_status := 'idempotency_violation';
            out_version := v_version;
          end if;
          return next;
          lo := hi + 1;
          continue;
        end if;

        if (v_expected >= 0 and (not v_exists or v_version <> v_expected))
           or (v_expected = -1 and v_exists)
           or (v_expected = -3 and not v_exists) then
          out_status := 'conflict';
          out_version := case when v_exists then v_version else null end;
          return next;
          lo := hi + 1;
          continue;
        end if;

        if not v_exists then
          v_version := -1;
          v_hash := '\\x';
        end if;
        if p_counts[i] > 0 then
          v_hashes := array[]::bytea[];
          for j in lo..hi loop
            v_hash := sha256(v_hash || int8send(v_version + 1 + (j - lo)) || p_digests[j]);
            v_hashes := v_hashes || v_hash;
          end loop;

          with inserted as (
            insert into eventstore.events (event_id, stream_id, stream_position, event_type, schema_version,
                                           data, metadata, tenant_id, occurred_at, content_digest, hash)
            select u.id, p_stream_ids[i], v_version + u.ord, u.t, u.sv, u.d, u.m, u.ten, u.occ, u.dig, u.h
              from unnest(p_event_ids[lo:hi], p_types[lo:hi], p_schema_versions[lo:hi], p_data[lo:hi],
                          p_metadata[lo:hi], p_tenant_ids[lo:hi], p_occurred_at[lo:hi], p_digests[lo:hi], v_hashes)
                   with ordinality as u(id, t, sv, d, m, ten, occ, dig, h, ord)
             order by u.ord
            returning global_position, stream_position
          )
          select array_agg(global_position order by stream_position) into out_global_positions from inserted;

          update eventstore.streams set version = v_version + p_counts[i], last_hash = v_hash
            where stream_id = p_stream_ids[i];
          v_wrote := true;
          out_first_position := v_version + 1;
          out_transaction_id := pg_current_xact_id();
        end if;
        out_status := 'ok';
        out_version := v_version + p_counts[i];
        return next;
        lo := hi + 1;
      end loop;

      if v_wrote then
        perform pg_notify('eventstore_appended', '');
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema eventstore cascade`.execute(db);
}
