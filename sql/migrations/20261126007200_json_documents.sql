-- The documents written with every score and every feature computation, and
-- read rarely and whole, are json instead of jsonb:
-- prediction_history.contributions (one per score: ~46 numbers),
-- features_snapshot.features and .meddicc (one per computation).
-- jsonb_in builds the binary form on every write, about three times the
-- work of json_in, which only validates the text and stores it (measured on
-- a 46-key document: 22.6 vs 11.6 us per row, a text column 5.9 us); jsonb
-- also prints slower on the way out (11.1 vs 6.8 us). Their readers take
-- them whole (the scorer's previous contributions, the API) or through ->
-- and ->>, which json has too (the benchmark's MEDDICC coverage of a
-- cohort's won deals). The features document also stays under the TOAST
-- threshold as text (~1.1 kB; ~2 kB as jsonb), so it is no longer
-- compressed on every insert. predictions keeps jsonb: it is the frontend's
-- table, filtered by PostgREST and sent by Realtime.
alter table public.prediction_history
    alter column contributions type json using contributions::json;
alter table public.features_snapshot
    alter column features type json using features::json,
    alter column meddicc type json using meddicc::json,
    alter column features set compression lz4,
    alter column meddicc set compression lz4;
