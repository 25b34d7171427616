-- opportunity_history, features_snapshot and prediction_history are
-- appended to at every change and never looked up by id: readers go
-- through (opportunity_id, ...) indexes, and the id only orders a deal's
-- rows (the history's covering index carries it). Their primary keys were
-- an index entry per row that no query read (idx_scan 0 after a batched
-- bench-e2e run): one of the two index entries of each history, snapshot
-- and prediction history row. The ids still come from their sequences.
-- Without a primary key the tables' replica identity would be nothing,
-- and a deal's deletion (which deletes its rows) would fail on a table
-- someone adds to a publication: the whole old row identifies it instead
-- (logged only on those deletes, the rows are never updated).
alter table public.opportunity_history drop constraint if exists opportunity_history_pkey;
alter table public.features_snapshot drop constraint if exists features_snapshot_pkey;
alter table public.prediction_history drop constraint if exists prediction_history_pkey;
alter table public.opportunity_history replica identity full;
alter table public.features_snapshot replica identity full;
alter table public.prediction_history replica identity full;
