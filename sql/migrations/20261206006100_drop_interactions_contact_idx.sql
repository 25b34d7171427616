-- A deal's buyer contacts are a feature now (buyer_contacts): the feature
-- loader reads each interaction's named contact with the rest of the row,
-- and nothing reads the partial index of the interactions naming one. It
-- only cost writes.
drop index if exists public.interactions_contact_idx;
