/* Idempotent upserts of the raw layer: one statement per record does the
 * upsert, the placeholder parent, the history rows and the outbox row, so a
 * whole request or CSV chunk is one pipelined transaction. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dealscore/common.h"
#include "dealscore/log.h"

#define OUTBOX_HEADERS(occurred, source, hash, tp)                                          \
    "jsonb_build_object('event_id', gen_random_uuid(), 'occurred_at', " occurred            \
    ", 'source', " source ", 'source_hash', " hash ", 'traceparent', " tp ")"

static const char *sql_account =
    "with up as ("
    " insert into public.accounts as a (org_id, external_id, name, industry, region, size_band,"
    "  created_at, placeholder, source_hash)"
    " values ($1::uuid, $2, $3, $4, $5, $6, $7::timestamptz, false, $8)"
    " on conflict (org_id, external_id) do update set name = excluded.name,"
    "  industry = excluded.industry, region = excluded.region, size_band = excluded.size_band,"
    "  created_at = excluded.created_at, placeholder = false, source_hash = excluded.source_hash,"
    "  ingested_at = now()"
    " where a.source_hash is distinct from excluded.source_hash"
    " returning a.id),"
    " ev as ("
    " insert into public.outbox (org_id, opportunity_id, account_id, kind, payload, headers, key)"
    " select $1::uuid, o.id, up.id, 'account_updated', ''::bytea, "
    OUTBOX_HEADERS("$11::timestamptz", "$9::text", "$8::text", "$10::text") ", o.id::text"
    " from up join public.opportunities o on o.org_id = $1::uuid and o.account_id = up.id"
    " where o.outcome = 'open' and not o.placeholder"
    " order by o.id"
    " returning 1)"
    " select (select count(*) from up)::int, (select count(*) from ev)::int";

static const char *sql_opportunity =
    "with ins_acct as ("
    " insert into public.accounts (org_id, external_id, placeholder)"
    " select $1::uuid, $3, true where $3::text is not null"
    " on conflict (org_id, external_id) do nothing returning id),"
    " acct as (select id from ins_acct"
    "  union all select id from public.accounts where org_id = $1::uuid and external_id = $3),"
    " prev as (select id, stage, amount, close_date, outcome, placeholder"
    "  from public.opportunities where org_id = $1::uuid and external_id = $2),"
    " up as ("
    " insert into public.opportunities as o (org_id, external_id, account_id, account_external_id,"
    "  owner_id, product_category, persona, amount, currency, stage, created_at, close_date,"
    "  closed_at, outcome, placeholder, source_hash, changed_at)"
    " values ($1::uuid, $2, (select id from acct limit 1), $3, $4, $5, $6, $7::numeric, $8, $9,"
    "  $10::timestamptz, $11::date, $12::timestamptz, $13, false, $14, $17::timestamptz)"
    " on conflict (org_id, external_id) do update set account_id = excluded.account_id,"
    "  account_external_id = excluded.account_external_id, owner_id = excluded.owner_id,"
    "  product_category = excluded.product_category, persona = excluded.persona,"
    "  amount = excluded.amount, currency = excluded.currency, stage = excluded.stage,"
    "  created_at = excluded.created_at, close_date = excluded.close_date,"
    "  closed_at = excluded.closed_at, outcome = excluded.outcome, placeholder = false,"
    "  source_hash = excluded.source_hash, ingested_at = now(), changed_at = excluded.changed_at"
    " where o.source_hash is distinct from excluded.source_hash"
    /* A change the CRM dated before the one the row holds arrived late: keep
     * the newer state. Undated changes always apply (nothing to compare). */
    "  and (o.placeholder or o.changed_at is null or excluded.changed_at is null"
    "   or excluded.changed_at >= o.changed_at)"
    " returning o.id, o.account_id, o.stage, o.amount, o.close_date, o.outcome),"
    " hist as ("
    " insert into public.opportunity_history (org_id, opportunity_id, field, old_value, new_value,"
    "  changed_at)"
    " select $1::uuid, up.id, f.field, f.old_value, f.new_value,"
    "  case when prev.id is null or prev.placeholder then coalesce($17::timestamptz, $10::timestamptz)"
    "  else coalesce($17::timestamptz, $18::timestamptz) end"
    " from up left join prev on true"
    " cross join lateral (values"
    "  ('stage', prev.stage, up.stage, prev.stage is distinct from up.stage),"
    "  ('amount', prev.amount::text, up.amount::text, prev.amount is distinct from up.amount),"
    "  ('close_date', prev.close_date::text, up.close_date::text,"
    "   prev.close_date is distinct from up.close_date),"
    "  ('outcome', prev.outcome, up.outcome, prev.outcome is distinct from up.outcome)"
    " ) as f(field, old_value, new_value, changed)"
    " where f.changed and not (prev.id is null and f.field = 'outcome' and up.outcome = 'open')"
    " returning 1),"
    " ev as ("
    " insert into public.outbox (org_id, opportunity_id, account_id, kind, payload, headers, key)"
    " select $1::uuid, up.id, up.account_id,"
    "  case when prev.id is null or prev.placeholder then 'opportunity_upserted'"
    "   when up.outcome is distinct from prev.outcome and up.outcome <> 'open' then 'outcome_set'"
    "   when up.stage is distinct from prev.stage then 'stage_changed'"
    "   else 'opportunity_upserted' end, ''::bytea, "
    OUTBOX_HEADERS("coalesce($17::timestamptz, $18::timestamptz)", "$15::text", "$14::text",
                   "$16::text") ", up.id::text"
    " from up left join prev on true"
    " returning 1)"
    " select (select count(*) from up)::int, (select count(*) from ev)::int,"
    "  (select count(*) from hist)::int";

/* Interactions and transcripts share the shape: a placeholder opportunity
 * when the parent is not known yet, the upsert, an event unless the parent is
 * still a placeholder (its own arrival publishes then). */
#define CHILD_SQL(table, cols, vals, sets, kind, occurred)                                         \
    "with ins_opp as ("                                                                        \
    " insert into public.opportunities (org_id, external_id, placeholder)"                       \
    " values ($1::uuid, $3, true)"                                                             \
    " on conflict (org_id, external_id) do nothing returning id, account_id, placeholder),"     \
    " opp as (select * from (select id, account_id, placeholder from ins_opp"                  \
    "  union all select id, account_id, placeholder from public.opportunities"                 \
    "  where org_id = $1::uuid and external_id = $3) x limit 1),"                              \
    " up as ("                                                                                 \
    " insert into public." table " as t (org_id, external_id, opportunity_id,"                   \
    "  opportunity_external_id, " cols ", source_hash)"                                         \
    " values ($1::uuid, $2, (select id from opp), $3, " vals ")"                                \
    " on conflict (org_id, external_id) do update set opportunity_id = excluded.opportunity_id," \
    "  opportunity_external_id = excluded.opportunity_external_id, " sets ","                   \
    "  source_hash = excluded.source_hash, ingested_at = now()"                                 \
    " where t.source_hash is distinct from excluded.source_hash"                                \
    " returning t.id, t.opportunity_id),"                                                       \
    " ev as ("                                                                                 \
    " insert into public.outbox (org_id, opportunity_id, account_id, kind, payload, headers, key)" \
    " select $1::uuid, up.opportunity_id, opp.account_id, '" kind "', ''::bytea, "

static const char *sql_interaction =
    CHILD_SQL("interactions", "type, channel, occurred_at, duration_min, outcome, meta",
              "$4, $5, $6::timestamptz, $7::numeric, $8, coalesce($9::jsonb, '{}'::jsonb), $10",
              "type = excluded.type, channel = excluded.channel, occurred_at = excluded.occurred_at,"
              " duration_min = excluded.duration_min, outcome = excluded.outcome, meta = excluded.meta",
              "interaction_added", "$6")
    OUTBOX_HEADERS("$6::timestamptz", "$11::text", "$10::text", "$12::text")
    ", up.opportunity_id::text"
    " from up cross join opp where not opp.placeholder"
    " returning 1)"
    " select (select count(*) from up)::int, (select count(*) from ev)::int";

static const char *sql_transcript =
    CHILD_SQL("transcripts", "occurred_at, text", "$4::timestamptz, $5, $6",
              "occurred_at = excluded.occurred_at, text = excluded.text", "transcript_added", "$4")
    OUTBOX_HEADERS("$4::timestamptz", "$7::text", "$6::text", "$8::text")
    ", up.opportunity_id::text"
    " from up cross join opp where not opp.placeholder"
    " returning 1)"
    " select (select count(*) from up)::int, (select count(*) from ev)::int";

void ds_store_register(ds_pg_t *pg) {
    ds_pg_add_statement(pg, "ds_upsert_account", sql_account, 11);
    ds_pg_add_statement(pg, "ds_upsert_opportunity", sql_opportunity, 18);
    ds_pg_add_statement(pg, "ds_upsert_interaction", sql_interaction, 12);
    ds_pg_add_statement(pg, "ds_upsert_transcript", sql_transcript, 8);
}

typedef struct {
    char buf[8][48];
    int used;
} scratch_t;

static const char *ts(scratch_t *s, int64_t us) {
    if (!us) return NULL;
    ds_assert(s->used < 8);
    ds_format_time_us(us, s->buf[s->used], sizeof s->buf[0]);
    return s->buf[s->used++];
}

static const char *num(scratch_t *s, bool has, double v) {
    if (!has) return NULL;
    ds_assert(s->used < 8);
    snprintf(s->buf[s->used], sizeof s->buf[0], "%.17g", v);
    return s->buf[s->used++];
}

int ds_store_queue(ds_pg_batch_t *b, const ds_store_ctx_t *ctx, const ds_record_t *recs, size_t n,
                   ds_store_tag_t *tags) {
    for (size_t i = 0; i < n; i++) {
        const ds_record_t *r = &recs[i];
        scratch_t s = {.used = 0};
        const char *now = ts(&s, ctx->now_us);
        int rc;
        memset(&tags[i], 0, sizeof tags[i]);
        switch (r->kind) {
        case DS_REC_ACCOUNT: {
            const char *v[] = {ctx->org_id, r->external_id, r->name, r->industry, r->region,
                               r->size_band, ts(&s, r->created_at_us), r->source_hash,
                               ctx->source, ctx->traceparent, now};
            rc = ds_pg_batch_add_prepared(b, "ds_upsert_account", 11, v, NULL, NULL, &tags[i]);
            break;
        }
        case DS_REC_OPPORTUNITY: {
            const char *outcome = r->outcome ? r->outcome
                                             : ds_record_stage_outcome(r->stage, ctx->stage_outcome);
            int64_t closed = r->closed_at_us;
            /* A closed deal without a close time closed when the change was made. */
            if (!closed && strcmp(outcome, "open") != 0)
                closed = r->changed_at_us ? r->changed_at_us : ctx->now_us;
            const char *v[] = {ctx->org_id, r->external_id, r->account_external_id, r->owner_id,
                               r->product_category, r->persona, num(&s, r->has_amount, r->amount),
                               r->currency, r->stage, ts(&s, r->created_at_us),
                               r->close_date[0] ? r->close_date : NULL, ts(&s, closed), outcome,
                               r->source_hash, ctx->source, ctx->traceparent,
                               ts(&s, r->changed_at_us), now};
            rc = ds_pg_batch_add_prepared(b, "ds_upsert_opportunity", 18, v, NULL, NULL, &tags[i]);
            break;
        }
        case DS_REC_INTERACTION: {
            const char *v[] = {ctx->org_id, r->external_id, r->opportunity_external_id, r->type,
                               r->channel, ts(&s, r->occurred_at_us),
                               num(&s, r->has_duration, r->duration_min), r->result, r->meta_json,
                               r->source_hash, ctx->source, ctx->traceparent};
            rc = ds_pg_batch_add_prepared(b, "ds_upsert_interaction", 12, v, NULL, NULL, &tags[i]);
            break;
        }
        case DS_REC_TRANSCRIPT: {
            const char *v[] = {ctx->org_id, r->external_id, r->opportunity_external_id,
                               ts(&s, r->occurred_at_us), r->text, r->source_hash, ctx->source,
                               ctx->traceparent};
            rc = ds_pg_batch_add_prepared(b, "ds_upsert_transcript", 8, v, NULL, NULL, &tags[i]);
            break;
        }
        default:
            return DS_EINVAL;
        }
        if (rc != 0) return rc;
    }
    return DS_OK;
}

int ds_store_batch_cb(void *ud, void *tag, const PGresult *res, int err) {
    (void)ud;
    ds_store_tag_t *t = tag;
    if (!t || err != DS_OK) return DS_OK; /* the batch reports the first error itself */
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        t->changed = atoi(PQgetvalue(res, 0, 0));
        t->events = atoi(PQgetvalue(res, 0, 1));
        t->done = 1;
    }
    return DS_OK;
}

void ds_store_collect(const ds_store_tag_t *tags, size_t n, ds_store_counts_t *c) {
    for (size_t i = 0; i < n; i++) {
        if (tags[i].changed)
            c->changed++;
        else
            c->unchanged++;
        c->events += tags[i].events;
    }
}

int ds_store_org_by_slug(ds_pg_t *pg, const char *slug, bool create, char org_id[37], char *errstr,
                         size_t errstr_size) {
    PGresult *res = NULL;
    const char *v[] = {slug};
    int rc;
    if (create)
        rc = ds_pg_exec_params(pg,
                               "with ins as (insert into public.orgs (slug, name) values ($1, $1)"
                               " on conflict (slug) do nothing returning id)"
                               " select id from ins union all select id from public.orgs where slug = $1",
                               1, v, NULL, NULL, &res, errstr, errstr_size);
    else
        rc = ds_pg_exec_params(pg, "select id from public.orgs where slug = $1", 1, v, NULL, NULL,
                               &res, errstr, errstr_size);
    if (rc != 0) return rc;
    if (PQntuples(res) < 1) {
        PQclear(res);
        snprintf(errstr, errstr_size, "no org with slug \"%s\"", slug);
        return DS_ENOTFOUND;
    }
    snprintf(org_id, 37, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return DS_OK;
}

json_t *ds_store_org_stage_outcome(ds_pg_t *pg, const char *org_id) {
    PGresult *res = NULL;
    char err[256];
    const char *v[] = {org_id};
    if (ds_pg_exec_params(pg, "select settings->'stage_outcome' from public.orgs where id = $1::uuid",
                          1, v, NULL, NULL, &res, err, sizeof err) != 0)
        return NULL;
    json_t *m = NULL;
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        m = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    return m;
}
