-- Tell the scoring workers when an org's active model changes: they LISTEN
-- on channel dealscore_models and reload the model of the org in the payload.
-- pg_notify is transactional, so listeners hear it only after the commit that
-- made the model active.

create function public.models_notify_active() returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if new.status = 'active'
       and (tg_op = 'INSERT' or old.status is distinct from 'active') then
        perform pg_notify('dealscore_models', new.org_id::text);
    end if;
    return null;
end
$$;

create trigger models_notify_active
    after insert or update of status on public.models
    for each row execute function public.models_notify_active();

revoke all on function public.models_notify_active() from public;
