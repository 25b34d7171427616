-- Progress of `dealscore-scoring rescore` (the nightly re-score of every open
-- opportunity), so an interrupted run resumes where it stopped instead of
-- starting over. Operational state of the job, not tenant data: it lives in
-- schema dealscore, which API users cannot read.
--
-- A run walks the open, non-placeholder opportunities in (org_id, id) order
-- in chunks; after each chunk is committed it stores the last (org_id, id)
-- done. Every score of a run has the run's as_of, so a chunk scored twice
-- (a crash between the chunk's commit and this row's update) writes nothing
-- new (prediction_history is unique on opportunity, as_of, model version).
-- A new rescore of the same scope resumes the latest unfinished run started
-- within the last 24 hours, unless it is given --restart.

create table dealscore.rescore_runs (
    id                   bigserial primary key,
    -- The org rescored, or null for a run over every org.
    org_id               uuid references public.orgs (id) on delete cascade,
    -- The time every score of the run is "as of" (features as of then).
    as_of                timestamptz not null default now(),
    started_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now(),
    -- The last opportunity done, in (org_id, id) order; null before the
    -- first chunk. last_org_id null on an org's run means org_id.
    last_org_id          uuid,
    last_opportunity_id  uuid,
    scored               bigint not null default 0 check (scored >= 0),
    -- Open opportunities in scope when the run started (for progress).
    total                bigint,
    finished_at          timestamptz,
    status               text not null default 'running'
                         check (status in ('running', 'finished', 'abandoned'))
);

create index rescore_runs_unfinished_idx
    on dealscore.rescore_runs (org_id, started_at desc) where finished_at is null;

revoke all on dealscore.rescore_runs from public, anon, authenticated;
revoke all on sequence dealscore.rescore_runs_id_seq from public, anon, authenticated;
grant select, insert, update on dealscore.rescore_runs to service_role;
grant usage on sequence dealscore.rescore_runs_id_seq to service_role;

-- Rescore's keyset walk over the open opportunities, per org and overall.
create index opportunities_open_rescore_idx
    on public.opportunities (org_id, id) where outcome = 'open' and not placeholder;
