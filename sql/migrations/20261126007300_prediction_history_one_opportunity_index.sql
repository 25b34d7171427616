-- prediction_history kept two indexes led by opportunity_id: the unique
-- (opportunity_id, as_of, model_version) and (opportunity_id, as_of desc,
-- id desc) for "the previous score". The unique one answers that read too,
-- scanned backwards (as_of desc, model_version desc), so every score now
-- maintains one index entry fewer (a rescore of 1M writes 1M rows). Only
-- the tie-break between two scores of the same opportunity with the very
-- same as_of changes: by model version instead of by insertion.
drop index if exists public.prediction_history_opp_asof_idx;
