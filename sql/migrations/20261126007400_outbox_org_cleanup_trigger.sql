-- The outbox's foreign key to orgs cost a check (an SPI query that locks the
-- org row) for every event ingest writes: about 15 % of the ingest writer's
-- Postgres CPU in a batched webhook run. It protected nothing the raw rows
-- do not: ingest writes an outbox row only in the transaction that inserts
-- or changes the raw row it announces. An inserted row's own foreign key
-- checks (and locks) the org; a changed row is locked, so a concurrent
-- delete of its org waits for that transaction and then removes its events.
-- What the key still did, removing an org's events with the org, a trigger
-- now does.
alter table public.outbox drop constraint if exists outbox_org_id_fkey;

create function public.outbox_forget_org() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    delete from public.outbox where org_id = old.id;
    return old;
end
$$;
revoke all on function public.outbox_forget_org() from public;

create trigger orgs_forget_outbox after delete on public.orgs
    for each row execute function public.outbox_forget_org();
