-- "The previous score" of an opportunity is its latest history rows: read
-- them through this index with a LIMIT, whatever the history's length.
create index if not exists prediction_history_opp_asof_idx
    on public.prediction_history (opportunity_id, as_of desc, id desc);
