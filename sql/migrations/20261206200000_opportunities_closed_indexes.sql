-- The lookups by outcome and closing date, and by owner, are over closed
-- deals (win rates, cohorts, training sets: every query names a closed
-- outcome, `outcome <> 'open'`, `in ('won', 'lost')` or `= 'won'`, each of
-- which implies this predicate). Indexing open deals too made every change
-- of an open deal that is not a HOT update (its amount moved, or its page
-- was full) insert into both indexes: two of the seven entries such an
-- update wrote. Open deals are found through opportunities_open_rescore_idx.
drop index if exists public.opportunities_org_outcome_closed_idx;
create index opportunities_org_outcome_closed_idx
    on public.opportunities (org_id, outcome, closed_at)
    where outcome <> 'open';
drop index if exists public.opportunities_org_owner_idx;
create index opportunities_org_owner_idx
    on public.opportunities (org_id, owner_id, closed_at)
    where outcome <> 'open';
