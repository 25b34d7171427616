-- opportunity_history's foreign key to opportunities cost a check for every
-- history row: an SPI query that locks the opportunity row (and writes that
-- lock to the WAL). In a batched webhook run these checks took more of the
-- ingest writer's time than any insert, and on a fresh database, whose
-- cached check plan predates the table's statistics, far more (about 140 µs
-- a row). It protected nothing: ingest writes history rows only in the
-- statement that inserts or changes the opportunity they belong to, so the
-- row exists and is locked (or not yet visible to anyone) until that
-- transaction commits. What the key still did, removing a deal's history
-- with the deal, a statement-level trigger does, once per delete statement
-- (an org's delete cascades to its opportunities and so here too).
alter table public.opportunity_history
    drop constraint if exists opportunity_history_org_id_opportunity_id_fkey;

create function public.opportunity_history_forget() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    delete from public.opportunity_history h using gone g where h.opportunity_id = g.id;
    return null;
end
$$;
revoke all on function public.opportunity_history_forget() from public;

create trigger opportunities_forget_history after delete on public.opportunities
    referencing old table as gone
    for each statement execute function public.opportunity_history_forget();
