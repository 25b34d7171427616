-- Outbound score events (dealscore-notify). A subscription names an org's
-- receiver: a URL, the event types it wants, the smallest change of
-- probability worth an event, and the secret its events are signed with.
-- A delivery is one event for one subscription: its body exactly as it is
-- sent (and signed), and where its sending stands. Both tables are internal
-- (secrets, receivers' URLs): no privileges for anon or authenticated.

create table dealscore_internal.notify_subscriptions (
    id          uuid primary key default gen_random_uuid(),
    org_id      uuid not null references public.orgs (id) on delete cascade,
    url         text not null check (url ~* '^https?://'),
    event_types text[] not null default '{score.changed}'
                check (cardinality(event_types) > 0 and event_types <@ '{score.changed}'),
    -- Smallest |probability - previous probability| that makes an event.
    min_change  double precision not null default 0 check (min_change between 0 and 1),
    secret      text not null,            -- HMAC-SHA256 key of X-Dealscore-Signature
    created_at  timestamptz not null default now(),
    active      boolean not null default true
);
create index notify_subscriptions_org on dealscore_internal.notify_subscriptions (org_id) where active;

create table dealscore_internal.notify_deliveries (
    id              uuid primary key,     -- the CloudEvent id (receivers drop repeats by it)
    subscription_id uuid not null references dealscore_internal.notify_subscriptions (id)
                    on delete cascade,
    org_id          uuid not null,
    event_type      text not null,
    opportunity_id  uuid not null,
    event           json not null,        -- the request body, byte for byte
    status          text not null default 'pending'
                    check (status in ('pending', 'delivered', 'failed')),
    attempts        integer not null default 0,   -- tries started
    -- A pending delivery is due then; a try in flight pushes it past the
    -- request's timeout, so a killed process's try is taken up again.
    next_attempt_at timestamptz not null default now(),
    last_status     integer,              -- HTTP status of the last try; null when none came
    last_error      text,
    created_at      timestamptz not null default now(),
    delivered_at    timestamptz
);
create index notify_deliveries_due on dealscore_internal.notify_deliveries (next_attempt_at)
    where status = 'pending';
create index notify_deliveries_org on dealscore_internal.notify_deliveries (org_id, created_at);
create index notify_deliveries_subscription on dealscore_internal.notify_deliveries (subscription_id);
create index notify_deliveries_delivered on dealscore_internal.notify_deliveries (delivered_at)
    where status = 'delivered';

revoke all on dealscore_internal.notify_subscriptions, dealscore_internal.notify_deliveries
    from public, anon, authenticated;
grant select, insert, update, delete on dealscore_internal.notify_subscriptions,
    dealscore_internal.notify_deliveries to service_role;
