-- Replay protection for signed webhooks, shared by every ingest replica and
-- kept across restarts: ingest reserves a verified signature here when it
-- checks it (one insert; of concurrent copies of a request only one gets the
-- row) and deletes it again when the request's write fails.
--
-- The table lives in dealscore_internal, a schema for what only the workers
-- use: no privileges for anon or authenticated, so it is not reachable
-- through Supabase's APIs.

create schema if not exists dealscore_internal;
revoke all on schema dealscore_internal from public;
grant usage on schema dealscore_internal to service_role;

create table dealscore_internal.ingest_signatures (
    signature  text primary key,      -- lowercase hex HMAC-SHA256
    expires_at timestamptz not null   -- the replay window has passed by then
);
create index ingest_signatures_expires_at on dealscore_internal.ingest_signatures (expires_at);

revoke all on dealscore_internal.ingest_signatures from public;
grant select, insert, update, delete on dealscore_internal.ingest_signatures to service_role;
