-- The feature worker's reads and writes, measured with services/bench_feature
-- (2,000 opportunities per batch, 100k opportunities in the org).
--
-- Interactions: the loader needs (occurred_at, type, duration_min) of each
-- deal's interactions. With this index it reads them by index-only scans
-- (EXPLAIN ANALYZE of a batch: 22 ms and no heap fetches, against 50-120 ms
-- through the heap, ~1.6 heap pages per deal). It replaces both older
-- indexes on (opportunity_id, occurred_at): the benchmark's index-only
-- "interactions by type before close" still finds type in it, and ingest
-- maintains one index fewer.
create index if not exists interactions_opp_occurred_cover_idx
    on public.interactions (opportunity_id, occurred_at) include (type, duration_min);
drop index if exists public.interactions_opp_occurred_type_idx;
drop index if exists public.interactions_opp_occurred_idx;

-- Snapshots: a features document is ~2 kB as jsonb, just over the TOAST
-- threshold, so every row is compressed; lz4 does it in about a third of
-- pglz's time (a 2,000-row insert: ~110 ms instead of ~160 ms). Rows
-- written before keep their pglz data; both read back the same.
alter table public.features_snapshot
    alter column features set compression lz4,
    alter column meddicc set compression lz4;
