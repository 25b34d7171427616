-- Supabase shim for plain Postgres.
--
-- Provides what a Supabase project has built in and the dealscore migrations
-- rely on: the auth schema with auth.jwt() and auth.uid(), the roles anon,
-- authenticated and service_role, and the supabase_realtime publication.
-- Never apply this to a Supabase database (it refuses to run there); sql/migrate
-- applies it before the migrations on plain Postgres. Every statement is
-- idempotent, so applying it again is harmless.

do $$
begin
    -- Supabase's auth schema has the users table; ours never does.
    if to_regclass('auth.users') is not null then
        raise exception 'this database looks like supabase (auth.users exists): the shim is for plain postgres only';
    end if;
end
$$;

-- Roles are cluster-wide, so another database (or a concurrent run) may
-- already have created them: create each only if missing and tolerate a race.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        begin
            create role anon nologin noinherit;
        exception when duplicate_object or unique_violation then null;
        end;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        begin
            create role authenticated nologin noinherit;
        exception when duplicate_object or unique_violation then null;
        end;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        begin
            create role service_role nologin noinherit bypassrls;
        exception when duplicate_object or unique_violation then null;
        end;
    end if;
end
$$;

-- The role that runs the migrations (and the workers that connect as it) may
-- switch to these roles with SET ROLE, as Supabase's authenticator does.
do $$
begin
    if not pg_has_role(current_user, 'anon', 'member') then
        execute format('grant anon to %I', current_user);
    end if;
    if not pg_has_role(current_user, 'authenticated', 'member') then
        execute format('grant authenticated to %I', current_user);
    end if;
    if not pg_has_role(current_user, 'service_role', 'member') then
        execute format('grant service_role to %I', current_user);
    end if;
end
$$;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

-- The same definitions Supabase uses: the claims come from the
-- transaction-local setting request.jwt.claims that the API layer sets.
create or replace function auth.jwt() returns jsonb
language sql stable
as $$
    select coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;

create or replace function auth.uid() returns uuid
language sql stable
as $$
    select nullif(
        coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                 auth.jwt() ->> 'sub'),
        '')::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
    select coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                    auth.jwt() ->> 'role')
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role()
    to anon, authenticated, service_role;

-- Supabase's API roles can use the public schema.
grant usage on schema public to anon, authenticated, service_role;

-- Tables are added to the publication by the migrations, never FOR ALL TABLES:
-- only what the frontend may subscribe to is streamed.
do $$
begin
    if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
        begin
            create publication supabase_realtime;
        exception when duplicate_object or unique_violation then null;
        end;
    end if;
end
$$;
