-- Wake the outbox relay when events are written: every statement that inserts
-- outbox rows notifies channel dealscore_outbox, which the relay LISTENs on.
-- The writer of the rows may be another ingest replica (only the one holding
-- the relay's advisory lock publishes) or a CSV import: without this the
-- relay would see them only at its next idle poll (DEALSCORE_RELAY_POLL_MS).
-- pg_notify is transactional (heard after the commit) and folds the
-- identical notifications of one transaction into one.

create function dealscore_internal.outbox_notify() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    perform pg_notify('dealscore_outbox', '');
    return null;
end
$$;

create trigger outbox_notify
    after insert on dealscore_internal.outbox
    for each statement execute function dealscore_internal.outbox_notify();

revoke all on function dealscore_internal.outbox_notify() from public;
