-- Realtime needs org_id in every change of predictions (subscribers are
-- filtered by org), not the whole old row: an index identity on
-- (opportunity_id, org_id) puts both into every DELETE, and an INSERT or
-- UPDATE carries the whole new row (org_id, proba_close, previous_proba,
-- change: what moved and from where). REPLICA IDENTITY FULL also logged the
-- whole old row of every update: with it a rescore of 1M opportunities
-- wrote 4.6 GB of WAL for predictions instead of 2.9 GB, and took 155 s
-- instead of 145 s (services/bench_rescore).
create unique index if not exists predictions_realtime_identity_idx
    on public.predictions (opportunity_id, org_id);
alter table public.predictions replica identity using index predictions_realtime_identity_idx;

-- A prediction is rewritten at every score: half of each page left free
-- keeps the new version on the old one's page, so the update is HOT (no
-- index entries) and dirties one page instead of two. Applies to pages
-- written from now on (VACUUM FULL rewrites an existing table).
alter table public.predictions set (fillfactor = 50);
