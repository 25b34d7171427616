-- Supabase Realtime streams the latest prediction per opportunity. The
-- publication exists on Supabase and is created by sql/shim on plain
-- Postgres. REPLICA IDENTITY FULL puts the whole old row (with org_id) into
-- UPDATE and DELETE changes, so subscribers can be filtered by org.

alter table public.predictions replica identity full;

do $$
begin
    if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
        raise exception 'publication supabase_realtime is missing: on plain postgres apply sql/shim first (sql/migrate --shim)';
    end if;
    if not exists (select 1 from pg_publication where pubname = 'supabase_realtime'
                   and puballtables)
       and not exists (select 1 from pg_publication_tables
                       where pubname = 'supabase_realtime'
                         and schemaname = 'public' and tablename = 'predictions') then
        alter publication supabase_realtime add table public.predictions;
    end if;
end
$$;
