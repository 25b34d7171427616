-- Webhook signing: a token may carry a shared secret; requests made with it
-- must then be signed (HMAC-SHA256 of "<timestamp>.<body>"). The secret must
-- be readable by the ingest service to verify signatures, so it is stored as
-- it is; authenticated users have no grant on this column.
alter table public.ingest_tokens add column if not exists hmac_secret text;

-- The relay builds each event's protobuf from the outbox row's columns and
-- headers at publish time, so ingest writes an empty payload.
comment on column public.outbox.payload is
    'protobuf payload; empty when the relay encodes it from the row at publish time';
