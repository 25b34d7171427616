-- Written on 2026-12-06, dated to run just before 20261126000300.
--
-- 20261126000300 revokes anon's and authenticated's privileges on every
-- table and sequence in public and changes public's default privileges:
-- on a Supabase project that also hosts the customer's own app, that takes
-- the app's grants away. An applied migration is never edited, so this one
-- records what the app had before it runs, and 20261206000300 gives it back.
-- On a database migrated before this file existed it runs late and records
-- the state of then: nothing is given back there (sql/README.md says how to
-- re-grant by hand).
--
-- sql/migrate applies every pending file in version order, so an earlier
-- date is fine; `supabase db push` needs --include-all for it.

create schema if not exists dealscore_internal;
revoke all on schema dealscore_internal from public;

create table dealscore_internal.privileges_before_rls (
    kind     text not null check (kind in ('relation', 'default')),
    -- relation: its oid; default: the role whose default privileges these are
    object   oid not null,
    -- relation: its relkind; default: the defaclobjtype ('r' tables, 'S' sequences)
    objtype  "char" not null,
    acl      aclitem[]
);
revoke all on dealscore_internal.privileges_before_rls from public;

insert into dealscore_internal.privileges_before_rls (kind, object, objtype, acl)
select 'relation', c.oid, c.relkind, c.relacl
from pg_class c
where c.relnamespace = 'public'::regnamespace
  and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S');

insert into dealscore_internal.privileges_before_rls (kind, object, objtype, acl)
select 'default', d.defaclrole, d.defaclobjtype, d.defaclacl
from pg_default_acl d
where d.defaclnamespace = 'public'::regnamespace
  and d.defaclrole = to_regrole(current_user)
  and d.defaclobjtype in ('r', 'S');
