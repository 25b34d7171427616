-- The forecast a sales manager reads: per org, owner and close month or
-- quarter, the open deals (with a close date and a score), their amount,
-- the expected won amount (sum of calibrated probability x amount) and a
-- P10-P90 band of the won amount. The won amount is a Poisson-binomial sum
-- over amounts; the band is its normal (Lyapunov) approximation
-- mean +- 1.2815515655446004 sd with sd^2 = sum p (1 - p) amount^2, clipped
-- to [0, amount]. common/domain/forecast.c computes the same figures and the
-- exact band; `dealscore-scoring forecast-backtest` reports the gap between
-- the two. Rows with all_owners are the org's totals (owner_id null there).
-- security_invoker: a user reads it under opportunities' and predictions'
-- RLS, so only their org's (or their accounts') deals are summed.
create view public.forecast with (security_invoker = true) as
select o.org_id,
       case when grouping(o.owner_id) = 1 then null else o.owner_id end as owner_id,
       grouping(o.owner_id) = 1 as all_owners,
       x.period,
       x.period_start,
       count(*) as deals,
       sum(coalesce(o.amount, 0))::double precision as amount,
       sum(p.proba_close * coalesce(o.amount, 0)) as expected_won,
       greatest(0, sum(p.proba_close * coalesce(o.amount, 0))
           - 1.2815515655446004 * sqrt(sum(p.proba_close * (1 - p.proba_close) * coalesce(o.amount, 0) ^ 2)))
           as won_p10,
       least(sum(coalesce(o.amount, 0))::double precision, sum(p.proba_close * coalesce(o.amount, 0))
           + 1.2815515655446004 * sqrt(sum(p.proba_close * (1 - p.proba_close) * coalesce(o.amount, 0) ^ 2)))
           as won_p90
from public.opportunities o
join public.predictions p on p.opportunity_id = o.id and p.org_id = o.org_id
cross join lateral (values ('month', date_trunc('month', o.close_date::timestamp)::date),
                           ('quarter', date_trunc('quarter', o.close_date::timestamp)::date)) as x(period, period_start)
where o.outcome = 'open' and not o.placeholder and o.close_date is not null
group by o.org_id, x.period, x.period_start, grouping sets ((o.owner_id), ());

revoke all on public.forecast from anon, authenticated;
grant select on public.forecast to authenticated, service_role;
