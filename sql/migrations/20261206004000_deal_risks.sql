-- Deal risks: per open deal, the risk flags the scoring worker derives from
-- its features, each with evidence, a suggested action and the probability
-- the deal would have if the risk were resolved (what_if), ranked by gain.
-- The frontend reads deal_risks through Realtime under RLS, like
-- predictions; the worker writes it in the prediction's transaction.

-- The rules: rows with org_id null are the defaults every org uses; an
-- org's row replaces the default row of the same rule (the same columns,
-- all given). What param and fallback mean per rule: common/domain/risks.h.
create table public.risk_rules (
    id             uuid primary key default gen_random_uuid(),
    org_id         uuid references public.orgs (id) on delete cascade,
    rule           text not null
                   check (rule in ('meddicc_missing', 'stalled', 'close_date_pushed',
                                   'engagement_down', 'single_contact')),
    enabled        boolean not null default true,
    param          double precision not null check (param >= 0),
    fallback       double precision not null check (fallback >= 0),
    min_won_deals  integer not null default 20 check (min_won_deals >= 1),
    action         text not null check (action <> '')
);
create unique index risk_rules_rule_key on public.risk_rules (org_id, rule) nulls not distinct;

-- The same rows as ds_risk_rules_default (common/domain/risks.c).
insert into public.risk_rules (org_id, rule, enabled, param, fallback, min_won_deals, action) values
    (null, 'meddicc_missing', true, 0.5, 3, 20,
     'Establish the {element} with the buyer before the deal moves on'),
    (null, 'stalled', true, 1.0, 30, 20,
     'Agree a dated next step with the buyer that moves the deal to the next stage'),
    (null, 'close_date_pushed', true, 0.8, 2, 20,
     'Re-qualify the close date with the economic buyer and agree the timeline'),
    (null, 'engagement_down', true, 0.5, 0, 20,
     'Re-engage the buyer: book a meeting with the people who were active'),
    (null, 'single_contact', true, 1, 2, 20,
     'Multi-thread: bring a second buyer stakeholder into the next meeting');

-- The latest risks of each open deal (a deal that closed has no row). No
-- foreign key, like predictions: the worker writes rows only for deals that
-- exist, and the forget triggers below remove them with the deal or org.
create table public.deal_risks (
    org_id          uuid not null,
    opportunity_id  uuid primary key,
    account_id      uuid,
    as_of           timestamptz not null,
    model_version   text not null,
    proba_close     double precision not null check (proba_close between 0 and 1),
    risks           jsonb not null default '[]',
    updated_at      timestamptz not null default now()
);
create index deal_risks_org_account_idx on public.deal_risks (org_id, account_id);
-- Realtime needs org_id in every change (subscribers are filtered by it).
create unique index deal_risks_realtime_identity_idx on public.deal_risks (opportunity_id, org_id);
alter table public.deal_risks replica identity using index deal_risks_realtime_identity_idx;

revoke all on public.risk_rules, public.deal_risks from anon, authenticated;
grant select on public.risk_rules, public.deal_risks to authenticated;
grant select, insert, update, delete on public.risk_rules, public.deal_risks to service_role;

alter table public.risk_rules enable row level security;
alter table public.deal_risks enable row level security;

create policy risk_rules_select on public.risk_rules
    for select to authenticated
    using (org_id is null or org_id = (select dealscore.current_org_id()));

create policy deal_risks_select on public.deal_risks
    for select to authenticated
    using (org_id = (select dealscore.current_org_id())
           and (not (select dealscore.account_scoped())
                or opportunity_id = any ((select dealscore.member_opportunity_ids())::uuid[])));

do $$
begin
    if not exists (select 1 from pg_publication where pubname = 'supabase_realtime' and puballtables)
       and not exists (select 1 from pg_publication_tables
                       where pubname = 'supabase_realtime'
                         and schemaname = 'public' and tablename = 'deal_risks') then
        alter publication supabase_realtime add table public.deal_risks;
    end if;
end
$$;

create or replace function public.opportunity_dependents_forget() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    delete from public.opportunity_history h using gone g where h.opportunity_id = g.id;
    delete from public.features_snapshot f using gone g where f.opportunity_id = g.id;
    delete from public.predictions p using gone g where p.opportunity_id = g.id;
    delete from public.prediction_history p using gone g where p.opportunity_id = g.id;
    delete from public.opportunity_benchmarks b using gone g where b.opportunity_id = g.id;
    delete from public.deal_risks r using gone g where r.opportunity_id = g.id;
    return null;
end
$$;

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
    delete from public.deal_risks where org_id = old.id;
    return old;
end
$$;
