-- Cohort benchmarks (services/benchmark): what the worker stores with each
-- cached cohort, the indexes that keep one cohort query fast at a million
-- opportunities per org, and a view the frontend and /api/predict read.
--
-- A cohort is the closed deals (won and lost) of one org that match an
-- opportunity's industry, product category, region and persona (fewer when
-- relaxed: persona, then region, then product), with an amount in the
-- opportunity's amount band and closed since window_start. Its key is
-- canonical text, e.g.
--   v1|ind=software|prod=analytics|reg=emea|per=cfo|amt=[7704.50,12134.58)|m=12
-- so every opportunity with the same attributes and amount cell shares one
-- row. services/benchmark/cohort.h documents the amount grid and tolerance.

-- The cohort definition, stored so a row can be recomputed from itself
-- (periodic refresh, a deal that closed inside it) without parsing the key.
-- Attributes that the level relaxed are null; level says which apply
-- (0 all four, 1 without persona, 2 industry and product, 3 industry).
alter table public.benchmarks_cached
    add column if not exists level            smallint check (level between 0 and 3),
    add column if not exists industry         text,
    add column if not exists product_category text,
    add column if not exists region           text,
    add column if not exists persona          text,
    add column if not exists amount_lo        numeric,
    add column if not exists amount_hi        numeric,
    add column if not exists window_months    integer check (window_months > 0),
    add column if not exists window_start     timestamptz,
    add column if not exists won_count        integer check (won_count >= 0),
    -- Last time the worker recomputed the row (as_of only moves when the
    -- result changed): the periodic refresh takes the oldest first.
    add column if not exists refreshed_at     timestamptz not null default now();

comment on column public.benchmarks_cached.as_of is
    'when the worker computed this result; a recomputation that gives the same result keeps it';
comment on column public.benchmarks_cached.cohort_size is
    'closed deals (won and lost) in the cohort';

create index if not exists benchmarks_cached_refresh_idx
    on public.benchmarks_cached (refreshed_at);

-- One cohort query per relaxation level. Each scans only the org's closed
-- deals with the level's opportunity attributes, in the amount band (the
-- range column), and carries what the query filters and aggregates on so it
-- reads no heap page for deals outside the window; industry and region come
-- from accounts by primary key.
create index if not exists opportunities_bench_full_idx
    on public.opportunities (org_id, product_category, persona, amount)
    include (closed_at, outcome, account_id, created_at)
    where outcome in ('won', 'lost');
create index if not exists opportunities_bench_product_idx
    on public.opportunities (org_id, product_category, amount)
    include (closed_at, outcome, account_id, created_at)
    where outcome in ('won', 'lost');
create index if not exists opportunities_bench_amount_idx
    on public.opportunities (org_id, amount)
    include (closed_at, outcome, account_id, created_at)
    where outcome in ('won', 'lost');

-- Interactions by type before close, per won deal: an index-only scan.
create index if not exists interactions_opp_occurred_type_idx
    on public.interactions (opportunity_id, occurred_at) include (type);

-- The benchmark of each mapped opportunity with its cached cohort. RLS of
-- both tables applies to the caller (security_invoker): users see the
-- mappings of their org's (or, account-scoped, their accounts')
-- opportunities and the org-wide cohort rows.
create view public.opportunity_benchmark_summaries
with (security_invoker = true)
as
select ob.org_id,
       ob.opportunity_id,
       ob.account_id,
       ob.cohort_key,
       ob.match_level,
       bc.as_of,
       bc.cohort_size,
       bc.won_count,
       bc.metrics,
       jsonb_build_object(
           'cohort_key', ob.cohort_key,
           'match_level', ob.match_level,
           'matched', bc.metrics -> 'matched',
           'as_of', bc.as_of,
           'deals', bc.cohort_size,
           'won', bc.won_count,
           'win_rate', bc.metrics -> 'win_rate',
           'amount_median', bc.metrics -> 'amount' -> 'median',
           'cycle_days_median', bc.metrics -> 'cycle_days' -> 'median',
           'sufficient', bc.metrics -> 'sufficient') as summary
from public.opportunity_benchmarks ob
join public.benchmarks_cached bc
  on bc.org_id = ob.org_id and bc.cohort_key = ob.cohort_key;

revoke all on public.opportunity_benchmark_summaries from anon, authenticated;
grant select on public.opportunity_benchmark_summaries to authenticated, service_role;
