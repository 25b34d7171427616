-- A deal's risks are rewritten at every score, as its prediction is: half
-- of each page left free keeps the new version on the old one's page, so
-- the update is HOT (no entries in the table's three indexes). At 100 %
-- a third of the updates found their page full (9,118 of 29,074 in a
-- batched bench-e2e run at 1,500 changes/s). Applies to pages written from
-- now on (VACUUM FULL rewrites an existing table).
alter table public.deal_risks set (fillfactor = 50);
