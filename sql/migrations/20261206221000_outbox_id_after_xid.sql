-- An outbox row's id is taken after its transaction has an xid. The relay
-- passes over a gap in the ids that stays open and reads below its floor
-- until every transaction that could still fill the gap has ended
-- (services/ingest/relay_cursor.h): it tells them by the xmax of the
-- snapshot that passed the gap, which holds only if a row's writer had its
-- xid by the time its id was taken. An insert takes the id from the
-- column's default before it writes the row, and the xid only when it
-- writes; this default takes the xid first (a no-op for a transaction
-- that already wrote, as ingest's do before their outbox rows).
create function dealscore_internal.outbox_next_id() returns bigint
language plpgsql volatile
as $$
begin
    perform pg_current_xact_id();
    return nextval('dealscore_internal.outbox_id_seq');
end
$$;

revoke all on function dealscore_internal.outbox_next_id() from public;
grant execute on function dealscore_internal.outbox_next_id() to service_role;

alter table dealscore_internal.outbox alter column id set default dealscore_internal.outbox_next_id();
