-- A model's score writes a prediction_history row whose contributions
-- (~1.6 kB of json) and change (~1 kB) together take it over the TOAST
-- threshold, so both documents were compressed with pglz on every insert:
-- the largest single cost of the scoring worker's Postgres backend (8-9 %
-- of its CPU in a batched run), and pglz_decompress again when the next
-- score reads the contributions back. lz4 does both several times faster,
-- as for predictions (20261126006000). Only new values are compressed with
-- it; a server built without lz4 keeps pglz.
do $$
begin
    if exists (select 1 from pg_settings where name = 'default_toast_compression'
               and 'lz4' = any (enumvals)) then
        alter table public.prediction_history
            alter column contributions set compression lz4,
            alter column change set compression lz4;
    end if;
end
$$;
