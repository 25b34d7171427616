-- The view forecast with a quarter's band made of its months: each close
-- month's deals share a factor theta of their own (variance shock_var of
-- the months_ahead row of the org they are forecast at), the months'
-- thetas independent, so a quarter's variance is the sum of its months'
-- (ds_forecast_normal_groups in common/domain/forecast.h):
--   month:   var = sum (q - q^2 (1 + shock_var)) amount^2 + shock_var (sum q amount)^2
--   quarter: var = sum of its months' var
-- band mean +- 1.2815515655446004 sqrt(var), clipped to [0, amount].
-- `dealscore-scoring forecast-backtest` judges the quarter rows against
-- what their deals won (services/scoring/README.md). q, the rates and the
-- months ahead are those of 20261206006600_forecast_in_month.sql.
create or replace view public.forecast with (security_invoker = true) as
with o as (
    select o.*, least(3, greatest(0, (extract(year from o.close_date) * 12 + extract(month from o.close_date))
                                     - (extract(year from now()) * 12 + extract(month from now()))))::smallint
               as months_ahead
    from public.opportunities o
    where o.outcome = 'open' and not o.placeholder and o.close_date is not null
), d as (
    select o.org_id, o.owner_id, o.close_date, coalesce(o.amount, 0)::double precision as amount,
           least(1, greatest(0, p.proba_close) * coalesce(rs.rate, ro.rate, 1)) as q,
           least(coalesce(ro.shock_var, 0), 1.0 / 3) as shock_var
    from o
    join public.predictions p on p.opportunity_id = o.id and p.org_id = o.org_id
    left join public.forecast_rates ro on ro.org_id = o.org_id and ro.months_ahead = o.months_ahead
        and ro.stage = ''
    left join public.forecast_rates rs on rs.org_id = o.org_id and rs.months_ahead = o.months_ahead
        and rs.stage <> ''
        and rs.stage = trim(both '_' from regexp_replace(
                translate(o.stage, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'),
                '[^a-z0-9\u0080-\U0010FFFF]+', '_', 'g'))
), m as (
    select d.org_id,
           case when grouping(d.owner_id) = 1 then null else d.owner_id end as owner_id,
           grouping(d.owner_id) = 1 as all_owners,
           date_trunc('month', d.close_date::timestamp)::date as month_start,
           count(*) as deals,
           sum(d.amount) as amount,
           sum(d.q * d.amount) as expected_won,
           sum((d.q - d.q ^ 2 * (1 + d.shock_var)) * d.amount ^ 2) + max(d.shock_var) * sum(d.q * d.amount) ^ 2
               as var
    from d
    group by d.org_id, date_trunc('month', d.close_date::timestamp), grouping sets ((d.owner_id), ())
), p as (
    select m.org_id, m.owner_id, m.all_owners, 'month'::text as period, m.month_start as period_start,
           m.deals, m.amount, m.expected_won, m.var
    from m
    union all
    select m.org_id, m.owner_id, m.all_owners, 'quarter'::text,
           date_trunc('quarter', m.month_start::timestamp)::date, sum(m.deals)::bigint, sum(m.amount),
           sum(m.expected_won), sum(m.var)
    from m
    group by m.org_id, m.owner_id, m.all_owners, date_trunc('quarter', m.month_start::timestamp)
)
select p.org_id, p.owner_id, p.all_owners, p.period, p.period_start, p.deals, p.amount, p.expected_won,
       greatest(0, p.expected_won - 1.2815515655446004 * sqrt(greatest(0, p.var))) as won_p10,
       least(p.amount, p.expected_won + 1.2815515655446004 * sqrt(greatest(0, p.var))) as won_p90
from p;
