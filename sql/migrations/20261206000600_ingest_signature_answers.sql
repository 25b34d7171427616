-- A signed webhook that n8n sends again because its answer was lost in
-- transit gets the original answer instead of a 401 (replayed signature):
-- the reservation of a signature keeps what identifies the request and, once
-- its records committed (in the same transaction), the answer given.
--
-- request_sha256: SHA-256 of the token, route, parameters and body; a repeat
--   with another value is refused. NULL on reservations made before this
--   migration (they are refused as replays, as they were).
-- status, response: the HTTP status and JSON body of the committed request;
--   NULL while it is in flight.
alter table dealscore_internal.ingest_signatures
    add column if not exists request_sha256 text,
    add column if not exists status integer,
    add column if not exists response text;
