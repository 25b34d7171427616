-- An open deal's amount edit can be a HOT update. Postgres updates a row
-- in place of its indexes (HOT) only when no column any index names
-- changed, whatever the index's predicate: the three cohort indexes, over
-- closed deals only, named amount, so every amount edit of an open deal
-- wrote five index entries. They now name closed_amount, the amount of a
-- closed deal and NULL while the deal is open, which an open deal's
-- amount edit leaves unchanged. Adding a stored generated column rewrites
-- the table once (under an exclusive lock: on a large table, run it in a
-- maintenance window).
alter table public.opportunities
    add column if not exists closed_amount numeric
    generated always as (case when outcome in ('won', 'lost') then amount end) stored;

drop index if exists public.opportunities_bench_full_v2_idx;
drop index if exists public.opportunities_bench_product_v2_idx;
drop index if exists public.opportunities_bench_amount_v2_idx;
create index opportunities_bench_full_v3_idx
    on public.opportunities (org_id, product_category, persona, closed_amount)
    include (id, account_id, outcome, created_at, closed_at)
    where outcome in ('won', 'lost');
create index opportunities_bench_product_v3_idx
    on public.opportunities (org_id, product_category, closed_amount)
    include (id, account_id, outcome, created_at, closed_at)
    where outcome in ('won', 'lost');
create index opportunities_bench_amount_v3_idx
    on public.opportunities (org_id, closed_amount)
    include (id, account_id, outcome, created_at, closed_at)
    where outcome in ('won', 'lost');
