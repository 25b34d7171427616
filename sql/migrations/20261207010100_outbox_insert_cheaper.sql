-- What every outbox insert runs, made cheaper (a profile of ingest's
-- writer at one change per request: 2.8 % of its backend's CPU in the
-- id default's PL/pgSQL call, 2.1 % in the notify trigger's search_path
-- set and reset around each call).
--
-- The id default keeps taking the transaction's xid before the id
-- (20261206221000_outbox_id_after_xid.sql): a CASE evaluates its condition
-- before its result. As one SELECT in SQL, the planner inlines it into the
-- insert instead of calling a function per row.
create or replace function dealscore_internal.outbox_next_id() returns bigint
language sql volatile
as $$
    select case when pg_catalog.pg_current_xact_id() is not null
                then pg_catalog.nextval('dealscore_internal.outbox_id_seq') end
$$;

-- Not security definer, and every name it uses is qualified: it needs no
-- search_path of its own.
create or replace function dealscore_internal.outbox_notify() returns trigger
language plpgsql
as $$
begin
    perform pg_catalog.pg_notify('dealscore_outbox', '');
    return null;
end
$$;
