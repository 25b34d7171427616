-- One shape for a score's change wherever it is kept:
--   {"previous_proba": p | null, "delta": proba_close - p | null,
--    "drivers": [{"feature", "label", "previous", "current", "change"}]}
-- (domain/model.h ds_score_change_write; prediction.made's PredictionChange
-- and /api/predict's "change" carry the same). predictions.change held only
-- the drivers array; prediction_history had no change at all, so a trend
-- could not say what moved each point. history's change is json like its
-- contributions (written with every score, read whole).
alter table public.prediction_history add column if not exists change json;

update public.predictions
   set change = jsonb_build_object(
           'previous_proba', previous_proba,
           'delta', proba_close - previous_proba,
           'drivers', case when jsonb_typeof(change) = 'array' then change else '[]'::jsonb end)
 where change is null or jsonb_typeof(change) <> 'object';

-- The latest history row of each opportunity is the score predictions
-- holds: it gets the same document. Older rows keep null (their drivers'
-- changes were never stored).
update public.prediction_history h
   set change = p.change::json
  from public.predictions p
 where h.change is null
   and p.opportunity_id = h.opportunity_id
   and p.as_of = h.as_of
   and p.model_version = h.model_version;
