-- Without foreign keys to opportunities (20261127000300), a deal deleted
-- while a worker's write transaction was open can leave that transaction's
-- derived rows behind, and no deal delete will ever match them again. They
-- still carry their org: deleting the org removes every derived row and
-- history row of it, whatever became of the deal. The org's outbox rows
-- were already removed so (20261126007400); one trigger now does both.
-- (features_snapshot has no index on org_id, so this scans it once per org
-- deleted; orgs are deleted one at a time.)
drop trigger if exists orgs_forget_outbox on public.orgs;
drop function if exists public.outbox_forget_org();

create function public.org_dependents_forget() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    delete from public.outbox where org_id = old.id;
    delete from public.opportunity_history where org_id = old.id;
    delete from public.features_snapshot where org_id = old.id;
    delete from public.predictions where org_id = old.id;
    delete from public.prediction_history where org_id = old.id;
    delete from public.opportunity_benchmarks where org_id = old.id;
    return old;
end
$$;
revoke all on function public.org_dependents_forget() from public;

create trigger orgs_forget_dependents after delete on public.orgs
    for each row execute function public.org_dependents_forget();
