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
      global_position bigint generated always as identity,
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
      hash bytea not null,
      -- Log order is the key: every reader walks it; a separate global_position index would only slow appends.
      primary key (transaction_id, global_position)
    )`.execute(db);
  await sql`create unique index events_stream_position on eventstore.events (stream_id, stream_position)`.execute(db);
  await sql`create unique index events_event_id on eventstore.events (event_id)`.execute(db);

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
   * Appends must arrive sorted by stream id (lock order; appends to one stream
   * adjacent, in submission order). Set-based: a constant number of statements
   * per batch, whatever its size.
   * Expected version codes: >= 0 exact, -1 no_stream, -2 any, -3 exists.
   * Per event: p_event_append is its append's 1-based index, p_event_index its 0-based index within it.
   * p_notify: NOTIFY readers at commit. Postgres serializes the commits of all
   * notifying transactions (queue order), which would undo group commit, so the
   * batching writer passes false and signals after its commit instead.
   */
  await sql`
    create function eventstore.append_batch(
      p_stream_ids text[], p_expected bigint[], p_counts integer[],
      p_event_ids uuid[], p_types text[], p_schema_versions integer[], p_data jsonb[],
      p_metadata jsonb[], p_tenant_ids text[], p_occurred_at timestamptz[], p_digests bytea[],
      p_event_append integer[], p_event_index integer[], p_notify boolean
    ) returns table (
      out_index integer, out_status text, out_version bigint,
      out_event_id uuid, out_stream_position bigint, out_global_position bigint, out_transaction_id xid8
    ) language plpgsql as $$
    declare
      n integer := coalesce(array_length(p_stream_ids, 1), 0);
      -- per append: 0 ok, 1 replayed, 2 conflict, 3 idempotency violation
      a_code integer[] := array_fill(0, array[n]);
      a_start bigint[] := array_fill(0::bigint, array[n]);
      a_version bigint[] := array_fill(-1::bigint, array[n]);
      a_lo integer[] := array_fill(1, array[n]);
      -- head hash of the append's stream at batch start, when no earlier append in this batch extended it
      a_head bytea[] := array_fill(null::bytea, array[n]);
      v_events integer := coalesce(array_length(p_event_ids, 1), 0);
      v_hashes bytea[] := array_fill(null::bytea, array[v_events]);
      v_hash bytea;
      v_digest bytea;
      v_chain_append integer := 0;
      v_extended boolean;
      j integer := 0;
      ea integer;
      v_known uuid[];
      v_offset integer := 1;
      v_stream text := null;
      v_version bigint;
      v_found integer;
      v_same integer;
      r record;
    begin
      -- Lock the heads in stream order, creating the missing ones that may be created.
      -- A concurrent creator makes the insert wait for it, then the lock reads its committed head.
      insert into eventstore.streams (stream_id, version, last_hash)
        select distinct u.sid, -1, '\\x'::bytea from unnest(p_stream_ids, p_expected) as u(sid, e)
         where u.e in (-1, -2) order by 1
        on conflict (stream_id) do nothing;
      perform 1 from eventstore.streams s where s.stream_id = any (p_stream_ids) order by s.stream_id for update;

      -- Ids already stored: only a retry (or a misuse) has any, so the common case is one index probe per id.
      v_known := array(select e.event_id from eventstore.events e where e.event_id = any (p_event_ids));

      for r in
        select u.idx::integer as idx, u.sid, u.expected, u.cnt, coalesce(h.version, -1) as head, h.last_hash
          from unnest(p_stream_ids, p_expected, p_counts) with ordinality as u(sid, expected, cnt, idx)
          left join eventstore.streams h on h.stream_id = u.sid
         order by u.idx
      loop
        a_lo[r.idx] := v_offset;
        if v_stream is distinct from r.sid then
          v_stream := r.sid;
          v_version := r.head;
          v_extended := false;
        end if;
        if cardinality(v_known) > 0 then
          select count(*), count(*) filter (where e.stream_id = r.sid) into v_found, v_same
            from eventstore.events e
           where e.event_id = any (p_event_ids[v_offset : v_offset + r.cnt - 1]) and e.event_id = any (v_known);
        else
          v_found := 0;
        end if;
        if v_found > 0 then
          a_code[r.idx] := case when v_found = r.cnt and v_same = v_found then 1 else 3 end;
          a_version[r.idx] := v_version;
        elsif (r.expected >= 0 and v_version <> r.expected)
           or (r.expected = -1 and v_version >= 0)
           or (r.expected = -3 and v_version < 0) then
          a_code[r.idx] := 2;
          a_version[r.idx] := v_version;
        else
          a_code[r.idx] := 0;
          a_start[r.idx] := v_version + 1;
          v_version := v_version + r.cnt;
          a_version[r.idx] := v_version;
          if not v_extended and r.cnt > 0 then
            a_head[r.idx] := coalesce(r.last_hash, '\\x'::bytea);
            v_extended := true;
          end if;
        end if;
        v_offset := v_offset + r.cnt;
      end loop;

      -- The hash chain, event by event. Appends arrive grouped by stream, so an
      -- accepted append either starts from its stream's head or continues the
      -- chain of the accepted append just before it.
      foreach v_digest in array p_digests loop
        j := j + 1;
        ea := p_event_append[j];
        if a_code[ea] = 0 then
          if ea <> v_chain_append then
            v_chain_append := ea;
            if a_head[ea] is not null then
              v_hash := a_head[ea];
            end if;
          end if;
          v_hash := sha256(v_hash || int8send(a_start[ea] + p_event_index[j]) || v_digest);
          v_hashes[j] := v_hash;
        end if;
      end loop;

      -- One row per append (its outcome), then one row per stored event of an
      -- accepted or replayed append (its positions): O(appends + events).
      return query
      with inserted as (
        insert into eventstore.events (event_id, stream_id, stream_position, event_type, schema_version,
                                       data, metadata, tenant_id, occurred_at, content_digest, hash)
        select u.id, p_stream_ids[u.ea], a_start[u.ea] + u.ei, u.t, u.sv, u.d, u.m, u.ten, u.occ, u.dig, u.h
          from unnest(p_event_ids, p_types, p_schema_versions, p_data, p_metadata, p_tenant_ids,
                      p_occurred_at, p_digests, p_event_append, p_event_index, v_hashes)
               with ordinality as u(id, t, sv, d, m, ten, occ, dig, ea, ei, h, ord)
         where a_code[u.ea] = 0
         order by u.ord
        returning event_id, stream_id, stream_position, global_position, transaction_id, hash
      ),
      heads as (
        update eventstore.streams s set version = last.stream_position, last_hash = last.hash
          from (select distinct on (i.stream_id) i.stream_id, i.stream_position, i.hash
                  from inserted i order by i.stream_id, i.stream_position desc) as last
         where s.stream_id = last.stream_id
        returning 1
      )
      select u.idx::integer,
             case a_code[u.idx] when 0 then 'ok' when 1 then 'replayed' when 2 then 'conflict' else 'idempotency_violation' end,
             a_version[u.idx], null::uuid, null::bigint, null::bigint, null::xid8
        from generate_subscripts(p_stream_ids, 1) as u(idx)
      union all
      select null, null, null, i.event_id, i.stream_position, i.global_position, i.transaction_id from inserted i
      union all
      select null, null, null, e.event_id, e.stream_position, e.global_position, e.transaction_id
        from eventstore.events e
       where cardinality(v_known) > 0 and e.event_id = any (v_known);

      if p_notify and exists (select 1 from unnest(p_counts, a_code) as x(cnt, code) where x.code = 0 and x.cnt > 0) then
        perform pg_notify('eventstore_appended', '');
      end if;
    end $$`.execute(db);
  // Custom plans would re-plan the statements above on every call; their shape never depends on the values.
  await sql`alter function eventstore.append_batch set plan_cache_mode = force_generic_plan`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop schema eventstore cascade`.execute(db);
}
