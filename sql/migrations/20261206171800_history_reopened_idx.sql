-- The benchmark worker asks, for every deal it places, whether its outcome
-- ever went back to open (the deal may still count in cached cohorts).
-- Answered from the deal's whole history, that probe read one heap page per
-- history row: on a deal with two years of history it was the worker's
-- costliest statement. Reopenings are rare, so this index is small and the
-- probe reads one index page.
create index if not exists opportunity_history_reopened_idx
    on public.opportunity_history (opportunity_id)
    where field = 'outcome' and new_value = 'open';
