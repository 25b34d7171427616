-- When the CRM made the change an opportunity row holds (as the record dated
-- it; NULL for undated records), so an older change
-- that arrives late (separate n8n workflows, retries) never overwrites a
-- newer state: ingest's upsert only applies a change at or after this time.
alter table public.opportunities add column if not exists changed_at timestamptz;
