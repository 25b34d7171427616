-- Gives the customer's app back what 20261126000300 took from it on a shared
-- Supabase project: the privileges of anon, authenticated and service_role
-- on every relation in public that is not dealscore's, and public's default
-- privileges for the migrating role, as 20261126000250 recorded them before
-- 20261126000300 ran. dealscore's own relations keep what the migrations
-- gave them. From here on a migration grants and revokes on the objects it
-- creates, by name, and never on a whole schema.

do $$
declare
    ours constant text[] := array[
        'orgs', 'accounts', 'opportunities', 'opportunity_history', 'interactions', 'transcripts',
        'features_snapshot', 'predictions', 'prediction_history', 'benchmarks_cached',
        'opportunity_benchmarks', 'opportunity_benchmark_summaries', 'models', 'meddicc_lexicon',
        'account_members', 'schema_migrations'];
    api_roles constant text[] := array['anon', 'authenticated', 'service_role'];
    r record;
    g record;
    what text;
begin
    for r in
        select s.object::regclass as rel, s.objtype, s.acl, c.relowner
        from dealscore_internal.privileges_before_rls s
        join pg_class c on c.oid = s.object
        where s.kind = 'relation'
          and c.relnamespace = 'public'::regnamespace
          and not c.relname = any (ours)
          -- nor a sequence of one of ours (their serial columns)
          and not exists (select 1 from pg_depend d join pg_class t on t.oid = d.refobjid
                          where d.classid = 'pg_class'::regclass and d.objid = c.oid
                            and d.deptype in ('a', 'i') and t.relname = any (ours)
                            and t.relnamespace = 'public'::regnamespace)
    loop
        what := case when r.objtype = 'S' then 'sequence' else 'table' end;
        execute format('revoke all on %s %s from anon, authenticated, service_role', what, r.rel);
        for g in
            select a.grantee::regrole::text as grantee, a.privilege_type, a.is_grantable
            from aclexplode(coalesce(r.acl, acldefault((case when r.objtype = 'S' then 's' else 'r' end)::"char",
                                                       r.relowner))) a
            where a.grantee <> 0 and a.grantee::regrole::text = any (api_roles)
        loop
            execute format('grant %s on %s %s to %I%s', g.privilege_type, what, r.rel, g.grantee,
                           case when g.is_grantable then ' with grant option' else '' end);
        end loop;
    end loop;

    for r in select t.objtype from (values ('r'::"char"), ('S'::"char")) t(objtype) loop
        what := case when r.objtype = 'S' then 'sequences' else 'tables' end;
        execute format('alter default privileges in schema public revoke all on %s'
                       ' from anon, authenticated, service_role', what);
        for g in
            select a.grantee::regrole::text as grantee, a.privilege_type, a.is_grantable
            from dealscore_internal.privileges_before_rls s, aclexplode(s.acl) a
            where s.kind = 'default' and s.objtype = r.objtype and s.object = to_regrole(current_user)
              and a.grantee <> 0 and a.grantee::regrole::text = any (api_roles)
        loop
            execute format('alter default privileges in schema public grant %s on %s to %I%s',
                           g.privilege_type, what, g.grantee,
                           case when g.is_grantable then ' with grant option' else '' end);
        end loop;
    end loop;
end
$$;

drop table dealscore_internal.privileges_before_rls;
