-- What only the workers use leaves public: the outbox (event rows), the
-- ingest tokens (hashes and signing secrets) and the rescore runs' book-
-- keeping move into dealscore_internal, a schema anon and authenticated
-- have no privileges on, so Supabase's REST API cannot reach them. public
-- keeps only what a frontend reads, each table under its RLS policy.
-- (public.outbox was granted to authenticated, so events were readable.)
--
-- ALTER TABLE ... SET SCHEMA moves the tables' indexes, constraints and
-- owned sequences with them; rows, ids and foreign keys stay as they are.

alter table public.outbox set schema dealscore_internal;
alter table public.ingest_tokens set schema dealscore_internal;
alter table dealscore.rescore_runs set schema dealscore_internal;

drop policy if exists outbox_select on dealscore_internal.outbox;
drop policy if exists ingest_tokens_select on dealscore_internal.ingest_tokens;

-- Revoking a table's privileges revokes its column privileges too
-- (ingest_tokens had some for authenticated).
revoke all on dealscore_internal.outbox, dealscore_internal.ingest_tokens,
    dealscore_internal.rescore_runs from public, anon, authenticated;
revoke all on all sequences in schema dealscore_internal from public, anon, authenticated;
grant select, insert, update, delete on dealscore_internal.outbox, dealscore_internal.ingest_tokens,
    dealscore_internal.rescore_runs to service_role;
grant usage, select on all sequences in schema dealscore_internal to service_role;

-- Deleting an org removes its events from the outbox's new place.
create or replace function public.org_dependents_forget() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    delete from dealscore_internal.outbox where org_id = old.id;
    delete from public.opportunity_history where org_id = old.id;
    delete from public.features_snapshot where org_id = old.id;
    delete from public.predictions where org_id = old.id;
    delete from public.prediction_history where org_id = old.id;
    delete from public.opportunity_benchmarks where org_id = old.id;
    return old;
end
$$;
revoke all on function public.org_dependents_forget() from public;
