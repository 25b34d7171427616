-- Cohort query indexes, second version: the query selects the cohort's
-- deals with index-only scans. 20261126002000's opportunity indexes lacked
-- the opportunity id (so every candidate deal cost a heap visit), and the
-- accounts of an industry (and region) were read from the heap, a page per
-- few accounts. Measured on 100k opportunities per org (EXPLAIN ANALYZE,
-- services/bench_cohort): the full-level selection went from 16 ms and 784
-- buffers to 1.8 ms and 32 buffers, the industry-and-product level from 45 ms
-- and 2435 buffers to 4.9 ms and 108.

drop index if exists public.opportunities_bench_full_idx;
drop index if exists public.opportunities_bench_product_idx;
drop index if exists public.opportunities_bench_amount_idx;

-- Level 0 (industry, product, region, persona): product and persona are
-- equalities, the amount band is the range; the window (closed_at) and the
-- columns the aggregates need ride along.
create index if not exists opportunities_bench_full_v2_idx
    on public.opportunities (org_id, product_category, persona, amount)
    include (id, account_id, outcome, created_at, closed_at)
    where outcome in ('won', 'lost');
-- Levels 1 and 2 (persona, then region relaxed).
create index if not exists opportunities_bench_product_v2_idx
    on public.opportunities (org_id, product_category, amount)
    include (id, account_id, outcome, created_at, closed_at)
    where outcome in ('won', 'lost');
-- Level 3 (industry only).
create index if not exists opportunities_bench_amount_v2_idx
    on public.opportunities (org_id, amount)
    include (id, account_id, outcome, created_at, closed_at)
    where outcome in ('won', 'lost');

-- The accounts of an industry (and region), for the hash join with the
-- candidate deals.
create index if not exists accounts_bench_idx
    on public.accounts (org_id, industry, region) include (id);
