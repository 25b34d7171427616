-- Fewer indexes to maintain on the rows every score writes.
-- prediction_history (opportunity_id, created_at): no query orders the
-- history by created_at; "the latest score" reads
-- prediction_history_opp_asof_idx, idempotence uses the unique
-- (opportunity_id, as_of, model_version).
-- features_snapshot (opportunity_id, as_of desc): the unique
-- (opportunity_id, as_of, feature_version) serves the same reads (the
-- scorer's lookup by opportunity and as_of, the benchmark's latest snapshot
-- by a backward scan).
drop index if exists public.prediction_history_opp_idx;
drop index if exists public.features_snapshot_opp_idx;
