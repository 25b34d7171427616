-- dealscore data model: orgs, the raw layer written by ingest, the derived
-- layers written by the feature, scoring and benchmark workers, the model
-- registry, the outbox and the ingest tokens.
--
-- Conventions:
-- * uuid primary keys from gen_random_uuid() (built into Postgres 13+);
-- * org_id uuid not null on every tenant row; child rows reference their
--   parent through (org_id, id), so a row can never point into another org
--   and row-level security by org_id is sound;
-- * raw tables have the natural key unique (org_id, external_id) and the
--   audit columns ingested_at and source_hash (SHA-256 of the canonical
--   record, so an unchanged re-send is a no-op);
-- * placeholder rows stand for an external id that was referenced before the
--   record itself arrived; the real record later fills them in.

create table public.orgs (
    id          uuid primary key default gen_random_uuid(),
    slug        text not null unique
                check (slug ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    name        text,
    created_at  timestamptz not null default now(),
    -- Per-org settings; keys absent here fall back to the workers' defaults.
    --   stage_outcome: stage name -> 'won' | 'lost' | 'open'
    --   stage_order: stages in pipeline order (stage index feature)
    --   benchmark_months, benchmark_min_cohort, benchmark_amount_band
    settings    jsonb not null default jsonb_build_object(
                    'stage_outcome', jsonb_build_object('Closed Won', 'won', 'Closed Lost', 'lost'),
                    'stage_order', jsonb_build_array('Prospecting', 'Qualification',
                        'Needs Analysis', 'Value Proposition', 'Id. Decision Makers',
                        'Perception Analysis', 'Proposal/Price Quote',
                        'Negotiation/Review', 'Closed Won', 'Closed Lost'),
                    'benchmark_months', 12,
                    'benchmark_min_cohort', 5,
                    'benchmark_amount_band', 0.2)
                check (jsonb_typeof(settings) = 'object')
);

create table public.accounts (
    id           uuid primary key default gen_random_uuid(),
    org_id       uuid not null references public.orgs (id) on delete cascade,
    external_id  text not null check (external_id <> ''),
    name         text,
    industry     text,
    region       text,
    size_band    text,
    created_at   timestamptz,
    placeholder  boolean not null default false,
    ingested_at  timestamptz not null default now(),
    source_hash  text,
    unique (org_id, external_id),
    unique (org_id, id),
    check (placeholder or name is not null)
);

create table public.opportunities (
    id                   uuid primary key default gen_random_uuid(),
    org_id               uuid not null references public.orgs (id) on delete cascade,
    external_id          text not null check (external_id <> ''),
    account_id           uuid,
    account_external_id  text,
    owner_id             text,
    product_category     text,
    persona              text,
    amount               numeric check (amount >= 0),
    currency             text,
    stage                text,
    created_at           timestamptz,
    close_date           date,
    closed_at            timestamptz,
    outcome              text not null default 'open'
                         check (outcome in ('open', 'won', 'lost')),
    placeholder          boolean not null default false,
    ingested_at          timestamptz not null default now(),
    source_hash          text,
    unique (org_id, external_id),
    unique (org_id, id),
    foreign key (org_id, account_id) references public.accounts (org_id, id)
        on delete set null (account_id),
    check (placeholder or (stage is not null and created_at is not null))
);

-- Point-in-time history of the fields the feature engine must see as of a
-- past moment: the value of field at time T is the new_value of the latest
-- row with changed_at <= T (or the first row's old_value before it).
create table public.opportunity_history (
    id              bigserial primary key,
    org_id          uuid not null,
    opportunity_id  uuid not null,
    field           text not null
                    check (field in ('stage', 'amount', 'close_date', 'outcome')),
    old_value       text,
    new_value       text,
    changed_at      timestamptz not null,
    ingested_at     timestamptz not null default now(),
    foreign key (org_id, opportunity_id) references public.opportunities (org_id, id)
        on delete cascade
);

create table public.interactions (
    id                       uuid primary key default gen_random_uuid(),
    org_id                   uuid not null,
    external_id              text not null check (external_id <> ''),
    opportunity_id           uuid not null,
    opportunity_external_id  text not null,
    type                     text not null
                             check (type in ('email', 'phone', 'meeting', 'demo', 'support')),
    channel                  text,
    occurred_at              timestamptz not null,
    duration_min             numeric check (duration_min >= 0),
    outcome                  text,
    meta                     jsonb not null default '{}'
                             check (jsonb_typeof(meta) = 'object'),
    ingested_at              timestamptz not null default now(),
    source_hash              text,
    unique (org_id, external_id),
    foreign key (org_id, opportunity_id) references public.opportunities (org_id, id)
        on delete cascade
);

create table public.transcripts (
    id                       uuid primary key default gen_random_uuid(),
    org_id                   uuid not null,
    external_id              text not null check (external_id <> ''),
    opportunity_id           uuid not null,
    opportunity_external_id  text not null,
    occurred_at              timestamptz not null,
    text                     text not null,
    embedding                real[],
    ingested_at              timestamptz not null default now(),
    source_hash              text,
    unique (org_id, external_id),
    foreign key (org_id, opportunity_id) references public.opportunities (org_id, id)
        on delete cascade
);

create table public.features_snapshot (
    id               bigserial primary key,
    org_id           uuid not null,
    opportunity_id   uuid not null,
    as_of            timestamptz not null,
    feature_version  text not null,
    features         jsonb not null,
    meddicc          jsonb,
    computed_at      timestamptz not null default now(),
    unique (opportunity_id, as_of, feature_version),
    foreign key (org_id, opportunity_id) references public.opportunities (org_id, id)
        on delete cascade
);

-- The latest prediction per opportunity: the row the frontend subscribes to.
create table public.predictions (
    org_id          uuid not null,
    opportunity_id  uuid primary key,
    account_id      uuid,
    as_of           timestamptz not null,
    model_version   text not null,
    proba_close     double precision not null check (proba_close between 0 and 1),
    previous_proba  double precision check (previous_proba between 0 and 1),
    top_features    jsonb not null default '[]',
    change          jsonb,
    meddicc         jsonb,
    is_prior        boolean not null default false,
    updated_at      timestamptz not null default now(),
    foreign key (org_id, opportunity_id) references public.opportunities (org_id, id)
        on delete cascade
);

create table public.prediction_history (
    id              bigserial primary key,
    org_id          uuid not null,
    opportunity_id  uuid not null,
    as_of           timestamptz not null,
    model_version   text not null,
    proba_close     double precision not null check (proba_close between 0 and 1),
    contributions   jsonb,
    created_at      timestamptz not null default now(),
    unique (opportunity_id, as_of, model_version),
    foreign key (org_id, opportunity_id) references public.opportunities (org_id, id)
        on delete cascade
);

create table public.benchmarks_cached (
    id           bigserial primary key,
    org_id       uuid not null references public.orgs (id) on delete cascade,
    cohort_key   text not null,
    as_of        timestamptz not null,
    match_level  text not null,
    cohort_size  integer not null check (cohort_size >= 0),
    metrics      jsonb not null default '{}',
    unique (org_id, cohort_key)
);

create table public.opportunity_benchmarks (
    org_id          uuid not null,
    opportunity_id  uuid primary key,
    account_id      uuid,
    cohort_key      text not null,
    match_level     text not null,
    updated_at      timestamptz not null default now(),
    foreign key (org_id, opportunity_id) references public.opportunities (org_id, id)
        on delete cascade
);

-- Model registry. At most one active model per org (partial unique index).
create table public.models (
    id               uuid primary key default gen_random_uuid(),
    org_id           uuid not null references public.orgs (id) on delete cascade,
    version          text not null,
    created_at       timestamptz not null default now(),
    feature_names    text[] not null,
    artifact         bytea,
    calibration      jsonb,
    training_window  jsonb,
    metrics          jsonb,
    status           text not null default 'candidate'
                     check (status in ('candidate', 'active', 'retired')),
    unique (org_id, version)
);

-- Transactional outbox: ingest inserts a row in the same transaction as the
-- raw rows; the relay publishes unsent rows in id order and sets sent_at.
create table public.outbox (
    id              bigserial primary key,
    org_id          uuid not null references public.orgs (id) on delete cascade,
    opportunity_id  uuid,
    account_id      uuid,
    kind            text not null,
    payload         bytea not null,
    headers         jsonb not null default '{}',
    key             text,
    created_at      timestamptz not null default now(),
    sent_at         timestamptz
);

-- Ingest webhook tokens; only a hash of the token is stored.
create table public.ingest_tokens (
    id          uuid primary key default gen_random_uuid(),
    org_id      uuid not null references public.orgs (id) on delete cascade,
    token_hash  text not null unique,
    name        text,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);

-- MEDDICC phrase lexicon. Rows with org_id null are the default set every org
-- uses; an org's own rows add phrases, and an org row with weight 0 switches
-- off the default phrase of the same element.
create table public.meddicc_lexicon (
    id       uuid primary key default gen_random_uuid(),
    org_id   uuid references public.orgs (id) on delete cascade,
    element  text not null
             check (element in ('metrics', 'economic_buyer', 'decision_criteria',
                                'decision_process', 'paper_process', 'identify_pain',
                                'champion', 'competition')),
    phrase   text not null check (phrase <> ''),
    weight   real not null default 1 check (weight >= 0)
);
create unique index meddicc_lexicon_phrase_key
    on public.meddicc_lexicon (org_id, element, lower(phrase)) nulls not distinct;

-- Users who may only see some accounts (app_metadata.account_scoped).
create table public.account_members (
    org_id      uuid not null,
    account_id  uuid not null,
    user_id     uuid not null,
    created_at  timestamptz not null default now(),
    primary key (account_id, user_id),
    foreign key (org_id, account_id) references public.accounts (org_id, id)
        on delete cascade
);

-- Lookups the workers make.
create index opportunities_org_account_idx
    on public.opportunities (org_id, account_id);
create index opportunities_org_outcome_closed_idx
    on public.opportunities (org_id, outcome, closed_at);
create index opportunities_org_owner_idx
    on public.opportunities (org_id, owner_id, closed_at);
-- Benchmark cohorts: won deals of one org with the same product and persona,
-- recently closed (industry and region come from the account).
create index opportunities_won_cohort_idx
    on public.opportunities (org_id, product_category, persona, closed_at)
    where outcome = 'won';
create index accounts_cohort_idx
    on public.accounts (org_id, industry, region);
create index opportunity_history_opp_changed_idx
    on public.opportunity_history (opportunity_id, changed_at);
create index interactions_opp_occurred_idx
    on public.interactions (opportunity_id, occurred_at);
create index transcripts_opp_occurred_idx
    on public.transcripts (opportunity_id, occurred_at);
create index features_snapshot_opp_idx
    on public.features_snapshot (opportunity_id, as_of desc);
create index prediction_history_opp_idx
    on public.prediction_history (opportunity_id, created_at);
create index predictions_org_account_idx
    on public.predictions (org_id, account_id);
create index opportunity_benchmarks_cohort_idx
    on public.opportunity_benchmarks (org_id, cohort_key);
create unique index models_one_active_per_org
    on public.models (org_id) where status = 'active';
create index outbox_unsent_idx
    on public.outbox (id) where sent_at is null;
create index ingest_tokens_org_idx
    on public.ingest_tokens (org_id);
create index account_members_user_idx
    on public.account_members (user_id, org_id);
create index account_members_org_account_idx
    on public.account_members (org_id, account_id);
