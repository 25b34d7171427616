-- The rows the workers derive from a deal (features_snapshot, predictions,
-- prediction_history, opportunity_benchmarks) had foreign keys to
-- opportunities. Each inserted row ran a check that locks the opportunity
-- row FOR KEY SHARE. Three workers and ingest (its interactions) lock the
-- same deals within moments of each other, so the deals' row locks became
-- multixacts, and every further check had to read their members. During a
-- CSV import, auto_explain showed the benchmark worker's mapping insert of
-- 7,829 rows taking 25.3 s, 25.2 s of it in the key's trigger (3.2 ms a
-- row); the insert itself took 80 ms.
--
-- What the keys did:
-- - removing a deal's rows with the deal: the statement-level trigger that
--   already removed its history now does it for these tables too, once per
--   delete statement (an org's delete cascades to its opportunities and so
--   here too);
-- - refusing rows for a deal that is gone: each worker's insert now writes
--   only rows whose deal exists (a join, no row lock).
-- What they did that nothing does now: a deal deleted while a worker's
-- write transaction is open (deals are deleted by hand or with their org)
-- leaves that transaction's rows behind; deleting the org removes them
-- (20261127000400).
alter table public.features_snapshot
    drop constraint if exists features_snapshot_org_id_opportunity_id_fkey;
alter table public.predictions
    drop constraint if exists predictions_org_id_opportunity_id_fkey;
alter table public.prediction_history
    drop constraint if exists prediction_history_org_id_opportunity_id_fkey;
alter table public.opportunity_benchmarks
    drop constraint if exists opportunity_benchmarks_org_id_opportunity_id_fkey;

drop trigger if exists opportunities_forget_history on public.opportunities;
drop function if exists public.opportunity_history_forget();

create function public.opportunity_dependents_forget() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    delete from public.opportunity_history h using gone g where h.opportunity_id = g.id;
    delete from public.features_snapshot f using gone g where f.opportunity_id = g.id;
    delete from public.predictions p using gone g where p.opportunity_id = g.id;
    delete from public.prediction_history p using gone g where p.opportunity_id = g.id;
    delete from public.opportunity_benchmarks b using gone g where b.opportunity_id = g.id;
    return null;
end
$$;
revoke all on function public.opportunity_dependents_forget() from public;

create trigger opportunities_forget_dependents after delete on public.opportunities
    referencing old table as gone
    for each statement execute function public.opportunity_dependents_forget();
