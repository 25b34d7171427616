-- A lean outbox. In a batched webhook run the outbox cost the ingest writer
-- about as much Postgres time as the raw rows it announces:
--   * every row built a jsonb of headers with a random event id (about half
--     of the time of its insert) and went into two indexes (the key and the
--     partial index of unsent rows);
--   * the relay then updated every row to set sent_at: a new row version and
--     a new key entry for each event, 7 times the WAL of deleting it;
--   * sent rows were never removed, so the table grew with every event.
-- Now the headers are plain columns, the relay derives the event id from
-- the row (so an event published twice keeps its id), and it deletes a row
-- once Kafka acknowledged its event.
alter table public.outbox
    add column if not exists occurred_at timestamptz,
    add column if not exists source text,
    add column if not exists source_hash text,
    add column if not exists traceparent text;

update public.outbox
   set occurred_at = (headers ->> 'occurred_at')::timestamptz,
       source = headers ->> 'source',
       source_hash = headers ->> 'source_hash',
       traceparent = nullif(headers ->> 'traceparent', '')
 where sent_at is null;

delete from public.outbox where sent_at is not null;

drop index if exists public.outbox_unsent_idx;

-- The old columns stay for one release, so that ingest pods of the previous
-- version, still running while a rolling upgrade replaces them, can go on
-- writing (their inserts name payload, headers and key) and their relay
-- can go on reading. The new relay reads an old row's headers when its
-- columns are empty, and deletes a row the old relay marked sent without
-- publishing it again. New rows leave them at their defaults. A later
-- migration drops them.
alter table public.outbox alter column payload set default ''::bytea;

comment on table public.outbox is
    'events not yet published to Kafka: ingest inserts a row in the transaction that writes the'
    ' raw rows it announces; the relay publishes rows in id order and deletes them once Kafka'
    ' acknowledged them. payload, headers, key and sent_at are kept for one release for ingest'
    ' pods of the previous version during a rolling upgrade';
