-- A number that moves whenever what ingest reads to authenticate a webhook
-- may have changed: a token created, revoked or deleted, an org's settings
-- (its stage -> outcome map) changed, an org deleted. Ingest keeps the
-- tokens it read and, before each group of requests, reads only this
-- number (one row by its key): while it has not moved, the tokens it holds
-- are what a fresh lookup would return, so a revoke still applies to the
-- first request received after it committed.

create table dealscore_internal.ingest_auth_generation (
    id boolean primary key default true check (id),
    n bigint not null default 0
);
insert into dealscore_internal.ingest_auth_generation default values;

-- Security definer: whoever may change tokens or org settings moves the
-- number, without privileges on this table.
create function dealscore_internal.ingest_auth_generation_bump() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    update dealscore_internal.ingest_auth_generation set n = n + 1 where id;
    return null;
end
$$;
revoke all on function dealscore_internal.ingest_auth_generation_bump() from public;

create trigger ingest_auth_generation_bump
    after insert or update or delete or truncate on dealscore_internal.ingest_tokens
    for each statement execute function dealscore_internal.ingest_auth_generation_bump();

create trigger ingest_auth_generation_bump
    after update of settings or delete or truncate on public.orgs
    for each statement execute function dealscore_internal.ingest_auth_generation_bump();

revoke all on dealscore_internal.ingest_auth_generation from public, anon, authenticated;
grant select on dealscore_internal.ingest_auth_generation to service_role;
