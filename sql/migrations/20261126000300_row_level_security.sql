-- Row-level security: users read only their own org's rows, account-scoped
-- users only the rows of the accounts they are members of, and nobody but the
-- workers writes.
--
-- * authenticated: SELECT where org_id is app_metadata.org_id of the JWT; if
--   app_metadata.account_scoped is set, additionally only rows whose account
--   (directly, or through the opportunity) is in account_members for
--   auth.uid().
-- * anon: no privileges at all.
-- * workers write as the table owner or as service_role, which bypass RLS.
--   There are no write policies, so any other role's write is refused.
--
-- The policy helpers are SECURITY DEFINER (they read account_members and
-- opportunities as their owner, so policies never recurse) and STABLE; the
-- policies call them through (select ...) so Postgres evaluates them once per
-- statement rather than once per row.

create schema if not exists dealscore;
revoke all on schema dealscore from public;
grant usage on schema dealscore to authenticated, service_role;

-- app_metadata.org_id as a uuid, or null when absent or malformed (a null org
-- matches no row).
create function dealscore.current_org_id() returns uuid
language sql stable security definer
set search_path = ''
as $$
    select case when v ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                then v::uuid end
    from (select auth.jwt() -> 'app_metadata' ->> 'org_id' as v) j
$$;

-- True unless app_metadata.account_scoped is absent, null or false: a value
-- that is not clearly "no" restricts the user (fail closed).
create function dealscore.account_scoped() returns boolean
language sql stable security definer
set search_path = ''
as $$
    select coalesce(
        (auth.jwt() -> 'app_metadata' -> 'account_scoped')
            not in ('false'::jsonb, 'null'::jsonb, '"false"'::jsonb),
        false)
$$;

-- The accounts of the current org the current user is a member of.
create function dealscore.member_account_ids() returns uuid[]
language sql stable security definer
set search_path = ''
as $$
    select coalesce(array_agg(m.account_id), '{}')
    from public.account_members m
    where m.user_id = auth.uid()
      and m.org_id = dealscore.current_org_id()
$$;

-- The opportunities of those accounts.
create function dealscore.member_opportunity_ids() returns uuid[]
language sql stable security definer
set search_path = ''
as $$
    select coalesce(array_agg(o.id), '{}')
    from public.account_members m
    join public.opportunities o
      on o.org_id = m.org_id and o.account_id = m.account_id
    where m.user_id = auth.uid()
      and m.org_id = dealscore.current_org_id()
$$;

revoke all on function dealscore.current_org_id(), dealscore.account_scoped(),
    dealscore.member_account_ids(), dealscore.member_opportunity_ids() from public;
grant execute on function dealscore.current_org_id(), dealscore.account_scoped(),
    dealscore.member_account_ids(), dealscore.member_opportunity_ids()
    to authenticated, service_role;

-- Privileges. Supabase grants everything in public to anon and authenticated
-- by default; take that back and grant reads only. service_role gets what the
-- workers need.
revoke all on all tables in schema public from anon, authenticated;
revoke all on all sequences in schema public from anon, authenticated;
grant select, insert, update, delete on all tables in schema public to service_role;
grant usage, select on all sequences in schema public to service_role;
-- Tables that later migrations create start out the same way: nothing for
-- anon and authenticated until a migration grants it with a policy.
alter default privileges in schema public revoke all on tables from anon, authenticated;
alter default privileges in schema public revoke all on sequences from anon, authenticated;
alter default privileges in schema public
    grant select, insert, update, delete on tables to service_role;
alter default privileges in schema public grant usage, select on sequences to service_role;

grant select on
    public.orgs, public.accounts, public.opportunities, public.opportunity_history,
    public.interactions, public.transcripts, public.features_snapshot,
    public.predictions, public.prediction_history, public.benchmarks_cached,
    public.opportunity_benchmarks, public.models, public.outbox,
    public.meddicc_lexicon, public.account_members
    to authenticated;
-- Never the token hashes.
grant select (id, org_id, name, created_at, revoked_at) on public.ingest_tokens
    to authenticated;

alter table public.orgs                   enable row level security;
alter table public.accounts               enable row level security;
alter table public.opportunities          enable row level security;
alter table public.opportunity_history    enable row level security;
alter table public.interactions           enable row level security;
alter table public.transcripts            enable row level security;
alter table public.features_snapshot      enable row level security;
alter table public.predictions            enable row level security;
alter table public.prediction_history     enable row level security;
alter table public.benchmarks_cached      enable row level security;
alter table public.opportunity_benchmarks enable row level security;
alter table public.models                 enable row level security;
alter table public.outbox                 enable row level security;
alter table public.ingest_tokens          enable row level security;
alter table public.meddicc_lexicon        enable row level security;
alter table public.account_members        enable row level security;

-- The org itself.
create policy orgs_select on public.orgs
    for select to authenticated
    using (id = (select dealscore.current_org_id()));

-- Rows that belong to an account.
create policy accounts_select on public.accounts
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or id = any ((select dealscore.member_account_ids())::uuid[])));

create policy opportunities_select on public.opportunities
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or account_id = any ((select dealscore.member_account_ids())::uuid[])));

create policy account_members_select on public.account_members
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or account_id = any ((select dealscore.member_account_ids())::uuid[])));

create policy opportunity_benchmarks_select on public.opportunity_benchmarks
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])));

-- Rows that belong to an opportunity: through the opportunity, so a
-- denormalised account_id that went stale can never widen access.
create policy opportunity_history_select on public.opportunity_history
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])));

create policy interactions_select on public.interactions
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])));

create policy transcripts_select on public.transcripts
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])));

create policy features_snapshot_select on public.features_snapshot
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])));

create policy predictions_select on public.predictions
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])));

create policy prediction_history_select on public.prediction_history
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])));

-- Outbox rows carry an opportunity, an account, or both.
create policy outbox_select on public.outbox
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])
                or (opportunity_id is null
                    and account_id = any ((select dealscore.member_account_ids())::uuid[]))));

-- Org-wide rows: aggregates, the model registry and the lexicon are part of
-- what every user of the org sees; ingest tokens only unscoped users.
create policy benchmarks_cached_select on public.benchmarks_cached
    for select to authenticated
    using (org_id = (select dealscore.current_org_id()));

create policy models_select on public.models
    for select to authenticated
    using (org_id = (select dealscore.current_org_id()));

create policy meddicc_lexicon_select on public.meddicc_lexicon
    for select to authenticated
    using (org_id is null or org_id = (select dealscore.current_org_id()));

create policy ingest_tokens_select on public.ingest_tokens
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and not (select dealscore.account_scoped()));
