-- A CRM change that moves a deal's stage, close date or probability but no
-- indexed column (amount, owner, account, outcome) can be a HOT update,
-- which writes none of the table's index entries (five for an open deal),
-- but only when the deal's page has room for the new version. Packed full,
-- 5-9 % of such updates were HOT in a batched bench-e2e run moving 2,000
-- deals a stage at 1,000 changes/s (`--existing`); with 30 % of each page
-- left free, 91 %, and the ingest upsert touched 21.0 buffers per change
-- instead of 36-37 and wrote 7.7 WAL records instead of 12.8-13.0. Applies
-- to pages written from now on (VACUUM FULL rewrites an existing table).
alter table public.opportunities set (fillfactor = 70);
