-- The forecast counts a deal's amount in its close month only if it closes
-- won within that month: q = min(1, p * rate), p the calibrated probability
-- that it wins at all, rate the org's in-month rate of the deal's stage
-- (common/domain/forecast.h): over past forecast deals (open at a month's
-- start, close date in that month), the amount won within the month per
-- unit of their expected amount (expected = sum p amount, won = the amount
-- won within the month, deals = sum p), shrunk toward the org's rate
-- (stage '') by 5 expected wins of the mean size expected / deals, the
-- org's toward 1; per months_ahead 0-3, the close month's distance from
-- the month of the forecast (further out: 3), as a deal whose close date
-- is months away is less likely to win in that very month.
-- `dealscore-scoring forecast-backtest`
-- computes them with its replay and stores them here; a stage without a
-- row takes the org's rate of its months ahead, an org without rows 1 (q = p).
-- shock_var (on the org's rows; 0 on the others): the variance of a factor
-- theta (mean 1) the month's deals share, theta q their probabilities,
-- estimated from past months by moments (domain/forecast.h): the model's
-- and the rates' month-to-month error, which the plain Poisson-binomial
-- leaves out.
-- stage: the stage name as the feature engine normalizes it (ASCII
-- letters lowered, every run of other ASCII characters one '_', none at
-- either end), so the view matches opportunities.stage the same way.
create table public.forecast_rates (
    org_id       uuid not null references public.orgs (id) on delete cascade,
    months_ahead smallint not null check (months_ahead between 0 and 3),
    stage        text not null,
    deals        double precision not null check (deals >= 0),
    expected     double precision not null check (expected >= 0),
    won          double precision not null check (won >= 0),
    rate         double precision not null check (rate >= 0),
    shock_var    double precision not null default 0 check (shock_var >= 0),
    updated_at   timestamptz not null default now(),
    primary key (org_id, months_ahead, stage)
);

revoke all on public.forecast_rates from anon, authenticated;
grant select on public.forecast_rates to authenticated;
grant select, insert, update, delete on public.forecast_rates to service_role;
alter table public.forecast_rates enable row level security;
create policy forecast_rates_select on public.forecast_rates
    for select to authenticated
    using (org_id = (select dealscore.current_org_id()));

-- The view forecast with q in place of p: expected_won = sum q amount, the
-- band the normal approximation of ds_forecast_normal: mean +- 1.28155 sd,
-- sd^2 = sum (q - q^2 (1 + shock_var)) amount^2 + shock_var mean^2
-- (`forecast-backtest` prints its gap to the exact band). A quarter's row
-- treats theta as shared by its three months, which widens its band.
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
)
select d.org_id,
       case when grouping(d.owner_id) = 1 then null else d.owner_id end as owner_id,
       grouping(d.owner_id) = 1 as all_owners,
       x.period,
       x.period_start,
       count(*) as deals,
       sum(d.amount) as amount,
       sum(d.q * d.amount) as expected_won,
       greatest(0, sum(d.q * d.amount) - 1.2815515655446004 * sqrt(greatest(0,
           sum((d.q - d.q ^ 2 * (1 + d.shock_var)) * d.amount ^ 2)
           + max(d.shock_var) * sum(d.q * d.amount) ^ 2))) as won_p10,
       least(sum(d.amount), sum(d.q * d.amount) + 1.2815515655446004 * sqrt(greatest(0,
           sum((d.q - d.q ^ 2 * (1 + d.shock_var)) * d.amount ^ 2)
           + max(d.shock_var) * sum(d.q * d.amount) ^ 2))) as won_p90
from d
cross join lateral (values ('month', date_trunc('month', d.close_date::timestamp)::date),
                           ('quarter', date_trunc('quarter', d.close_date::timestamp)::date)) as x(period, period_start)
group by d.org_id, x.period, x.period_start, grouping sets ((d.owner_id), ());
