-- Cold-start priors (services/scoring/README.md, "Cold start"): what an org
-- without an active model is scored with.
--
-- opportunities.stage_probability: the CRM's own probability of the deal's
-- stage, as a share in [0, 1] (Salesforce's Probability / 100, HubSpot's
-- hs_deal_stage_probability, the canonical record field stage_probability).
-- Null when the CRM sent none.
alter table public.opportunities
    add column if not exists stage_probability double precision
        check (stage_probability >= 0 and stage_probability <= 1);

-- An org's own stage ladder (`dealscore-scoring ladder set`): the prior
-- probability of an open deal in each stage, used while the org has neither
-- a model nor enough closed deals for its own stage win rates. Stages are
-- stored as given; the scorer maps them onto the org's stage order and the
-- command refuses a ladder that falls with stage order. Scoring settings,
-- not tenant data the frontend reads: internal.
create table dealscore_internal.stage_ladders (
    org_id       uuid not null references public.orgs (id) on delete cascade,
    stage        text not null check (stage <> ''),
    probability  double precision not null check (probability >= 0 and probability <= 1),
    updated_at   timestamptz not null default now(),
    primary key (org_id, stage)
);

revoke all on dealscore_internal.stage_ladders from public, anon, authenticated;
grant select, insert, update, delete on dealscore_internal.stage_ladders to service_role;
