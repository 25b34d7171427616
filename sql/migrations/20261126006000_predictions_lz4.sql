-- The predictions row (drivers, change, MEDDICC evidence: ~2.5 kB) is over
-- the TOAST threshold, so every upsert compresses top_features (and often
-- meddicc). lz4 does that several times faster than the default pglz: a
-- nightly rescore upserts every open opportunity. Only new values are
-- compressed with it; a server built without lz4 keeps pglz.
do $$
begin
    if exists (select 1 from pg_settings where name = 'default_toast_compression'
               and 'lz4' = any (enumvals)) then
        alter table public.predictions
            alter column top_features set compression lz4,
            alter column change set compression lz4,
            alter column meddicc set compression lz4;
    end if;
end
$$;
