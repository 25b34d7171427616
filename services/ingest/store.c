/* Idempotent upserts of the raw layer, set-based: one statement per record
 * kind (and per repeat of a key) does, for every record of a group commit or
 * CSV chunk at once, the upsert, the placeholder parents, the history rows
 * and the outbox rows; the statements of a group go out as one pipelined
 * transaction. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"

/* The columns of an outbox row after its ids and kind; the relay derives the
 * event id from the row. */
#define OUTBOX_COLUMNS                                                                                       \
    "org_id, opportunity_id, account_id, kind, occurred_at, source, source_hash, traceparent"
#define OUTBOX_EVENT(occurred, source, hash, tp) occurred ", " source ", " hash ", " tp

/* Every statement takes the records of one kind as parallel arrays (one
 * element per record, "idx" its position in the statement) and does, for
 * all of them at once, what a record needs: the upsert, placeholder parents,
 * history rows and outbox rows. It returns one row (idx, events) for every
 * record that inserted or changed a row. One external id appears at most
 * once per statement (store_set_queue splits repeats into later
 * statements), so the joins on (org_id, external_id) are one to one. The
 * INSERT ... SELECT ... ORDER BY idx keep the outbox and history ids in
 * record order. */
static const char *sql_account =
    "with inp as (select * from unnest($1::int[], $2::uuid[], $3::text[], $4::text[], $5::text[],"
    "  $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],"
    "  $12::timestamptz[])"
    "  as i(idx, org_id, ext, name, industry, region, size_band, created_at, source_hash, source,"
    "   traceparent, now_at)),"
    " up as ("
    " insert into public.accounts as a (org_id, external_id, name, industry, region, size_band,"
    "  created_at, placeholder, source_hash)"
    " select org_id, ext, name, industry, region, size_band, created_at, false, source_hash"
    " from inp order by inp.idx"
    " on conflict (org_id, external_id) do update set name = excluded.name,"
    "  industry = excluded.industry, region = excluded.region, size_band = excluded.size_band,"
    "  created_at = excluded.created_at, placeholder = false, source_hash = excluded.source_hash,"
    "  ingested_at = now()"
    " where a.source_hash is distinct from excluded.source_hash"
    " returning a.id, a.org_id, a.external_id),"
    " ch as (select i.*, up.id from up join inp i on i.org_id = up.org_id and i.ext = up.external_id),"
    " fan as (select ch.*, o.id as opportunity_id from ch cross join lateral (select o.id"
    "  from public.opportunities o where o.org_id = ch.org_id and o.account_id = ch.id"
    "  and o.outcome = 'open' and not o.placeholder offset 0) o),"
    " ev as ("
    " insert into dealscore_internal.outbox (" OUTBOX_COLUMNS ")"
    " select org_id, opportunity_id, id, 'account_updated', " OUTBOX_EVENT(
        "now_at", "source", "source_hash",
        "traceparent") " from fan order by fan.idx, fan.opportunity_id)"
                       " select ch.idx, (select count(*) from fan where fan.idx = ch.idx)::int from ch";

/* The columns a record sets on its opportunity row, from the relation src
 * (the input or excluded), and when it may: a change of content that the
 * CRM did not date before the one the row holds (a change that arrived
 * late keeps the newer state; undated changes always apply, there is
 * nothing to compare). */
#define OPP_SET(src)                                                                                         \
    "account_id = " src ".account_id, account_external_id = " src ".account_external_id,"                    \
    " owner_id = " src ".owner_id, product_category = " src ".product_category,"                             \
    " persona = " src ".persona, amount = " src ".amount, currency = " src ".currency,"                      \
    " stage = " src ".stage, created_at = " src ".created_at, close_date = " src ".close_date,"              \
    " closed_at = " src ".closed_at, outcome = " src ".outcome, placeholder = false,"                        \
    " source_hash = " src ".source_hash, ingested_at = now(), changed_at = " src ".changed_at,"              \
    " stage_probability = " src ".stage_probability"
#define OPP_APPLIES(src)                                                                                     \
    "o.source_hash is distinct from " src ".source_hash and (o.placeholder or o.changed_at is null"          \
    " or " src ".changed_at is null or " src ".changed_at >= o.changed_at)"
#define OPP_SET_S OPP_SET("s")
#define OPP_APPLIES_S OPP_APPLIES("s")
#define OPP_SET_EXCLUDED OPP_SET("excluded")
#define OPP_APPLIES_EXCLUDED OPP_APPLIES("excluded")

/* Parents and existing rows are looked up key by key (OFFSET 0 keeps each
 * lateral subquery apart), so that no plan scans a table: a generic plan
 * took the unnest for 10 rows and hash-joined all of the accounts. Only
 * the accounts not found are inserted: a conflict check costs as much as
 * the lookup. A known deal's change is an UPDATE: ON CONFLICT DO UPDATE
 * probes the key again and locks the row first, a WAL record of its own.
 * The records of deals not found are inserted with ON CONFLICT, for a deal
 * that a concurrent writer inserts meanwhile (it is then updated as ON
 * CONFLICT does, and counts as new: the snapshot did not see it). */
#define SQL_OPPORTUNITY                                                                                      \
    "with inp as (select * from unnest($1::int[], $2::uuid[], $3::text[], $4::text[], $5::text[],"           \
    "  $6::text[], $7::text[], $8::numeric[], $9::text[], $10::text[], $11::timestamptz[],"                  \
    "  $12::date[], $13::timestamptz[], $14::text[], $15::text[], $16::text[], $17::text[],"                 \
    "  $18::timestamptz[], $19::timestamptz[], $20::float8[])"                                               \
    "  as i(idx, org_id, external_id, account_external_id, owner_id, product_category, persona, amount,"     \
    "   currency, stage, created_at, close_date, closed_at, outcome, source_hash, source, traceparent,"      \
    "   changed_at, now_at, stage_probability)),"                                                            \
    " keys as (select distinct org_id, account_external_id as ext from inp"                                  \
    "  where account_external_id is not null),"                                                              \
    " found as (select a.id, k.org_id, k.ext from keys k cross join lateral (select a.id"                    \
    "  from public.accounts a where a.org_id = k.org_id and a.external_id = k.ext offset 0) a),"             \
    " ins_acct as ("                                                                                         \
    " insert into public.accounts (org_id, external_id, placeholder)"                                        \
    " select k.org_id, k.ext, true from keys k where not exists (select 1 from found f"                      \
    "  where f.org_id = k.org_id and f.ext = k.ext)"                                                         \
    " on conflict (org_id, external_id) do nothing returning id, org_id, external_id as ext),"               \
    " acct as (select id, org_id, ext from found union all select id, org_id, ext from ins_acct),"           \
    " src as (select i.*, a.id as account_id from inp i"                                                     \
    "  left join acct a on a.org_id = i.org_id and a.ext = i.account_external_id),"                          \
    " prev as (select i.idx, p.* from inp i cross join lateral (select o.id, o.stage, o.amount,"             \
    "  o.close_date, o.outcome, o.placeholder from public.opportunities o"                                   \
    "  where o.org_id = i.org_id and o.external_id = i.external_id offset 0) p),"                            \
    " upd as ("                                                                                              \
    " update public.opportunities o set " OPP_SET_S " from prev p join src s on s.idx = p.idx"               \
    " where o.id = p.id and " OPP_APPLIES_S                                                                  \
    " returning s.idx, o.id, o.account_id, o.stage, o.amount, o.close_date, o.outcome),"                     \
    " ins as ("                                                                                              \
    " insert into public.opportunities as o (org_id, external_id, account_id, account_external_id,"          \
    "  owner_id, product_category, persona, amount, currency, stage, created_at, close_date,"                \
    "  closed_at, outcome, placeholder, source_hash, changed_at, stage_probability)"                         \
    " select s.org_id, s.external_id, s.account_id, s.account_external_id, s.owner_id,"                      \
    "  s.product_category, s.persona, s.amount, s.currency, s.stage, s.created_at, s.close_date,"            \
    "  s.closed_at, s.outcome, false, s.source_hash, s.changed_at, s.stage_probability"                      \
    " from src s where not exists (select from prev p where p.idx = s.idx) order by s.idx"                   \
    " on conflict (org_id, external_id) do update set " OPP_SET_EXCLUDED " where " OPP_APPLIES_EXCLUDED      \
    " returning o.id, o.org_id, o.external_id, o.account_id, o.stage, o.amount, o.close_date,"               \
    "  o.outcome),"                                                                                          \
    " up as (select idx, id, account_id, stage, amount, close_date, outcome from upd"                        \
    "  union all select i.idx, x.id, x.account_id, x.stage, x.amount, x.close_date, x.outcome"               \
    "  from ins x join inp i on i.org_id = x.org_id and i.external_id = x.external_id),"                     \
    " ch as (select i.idx, i.org_id, i.created_at, i.changed_at, i.now_at, i.source, i.source_hash,"         \
    "  i.traceparent, up.id, up.account_id, up.stage, up.amount, up.close_date, up.outcome,"                 \
    "  p.id is null or p.placeholder as fresh, p.stage as prev_stage, p.amount as prev_amount,"              \
    "  p.close_date as prev_close_date, p.outcome as prev_outcome, p.id is null as is_new"                   \
    "  from up join inp i on i.idx = up.idx left join prev p on p.idx = up.idx),"                            \
    " hist as ("                                                                                             \
    " insert into public.opportunity_history (org_id, opportunity_id, field, old_value, new_value,"          \
    "  changed_at)"                                                                                          \
    " select c.org_id, c.id, f.field, f.old_value, f.new_value,"                                             \
    "  case when c.fresh then coalesce(c.changed_at, c.created_at)"                                          \
    "  else coalesce(c.changed_at, c.now_at) end"                                                            \
    " from ch c cross join lateral (values"                                                                  \
    "  (1, 'stage', c.prev_stage, c.stage, c.prev_stage is distinct from c.stage),"                          \
    "  (2, 'amount', c.prev_amount::text, c.amount::text, c.prev_amount is distinct from c.amount),"         \
    "  (3, 'close_date', c.prev_close_date::text, c.close_date::text,"                                       \
    "   c.prev_close_date is distinct from c.close_date),"                                                   \
    "  (4, 'outcome', c.prev_outcome, c.outcome, c.prev_outcome is distinct from c.outcome)"                 \
    " ) as f(ord, field, old_value, new_value, changed)"                                                     \
    " where f.changed and not (c.is_new and f.field = 'outcome' and c.outcome = 'open')"                     \
    " order by c.idx, f.ord),"                                                                               \
    " ev as ("                                                                                               \
    " insert into dealscore_internal.outbox (" OUTBOX_COLUMNS ")"                                            \
    " select c.org_id, c.id, c.account_id,"                                                                  \
    "  case when c.fresh then 'opportunity_upserted'"                                                        \
    "   when c.outcome is distinct from c.prev_outcome and c.outcome <> 'open' then 'outcome_set'"           \
    "   when c.stage is distinct from c.prev_stage then 'stage_changed'"                                     \
    "   else 'opportunity_upserted' end, " OPP_EVENT " from ch c order by c.idx)"                            \
    " select idx, 1 from ch"
#define OPP_EVENT                                                                                            \
    OUTBOX_EVENT("coalesce(c.changed_at, c.now_at)", "c.source", "c.source_hash", "c.traceparent")
static const char *sql_opportunity = SQL_OPPORTUNITY;

/* Interactions and transcripts share the shape: a placeholder opportunity
 * when the parent is not known yet, the upsert, an event unless the parent is
 * still a placeholder (its own arrival publishes then). */
#define CHILD_SQL(table, unnest, cols, vals, sets, kind, occurred)                                           \
    "with inp as (select * from unnest($1::int[], $2::uuid[], $3::text[], $4::text[], " unnest ")),"         \
    " keys as (select distinct org_id, opp_ext from inp),"                                                   \
    " found as (select o.id, k.org_id, k.opp_ext as external_id, o.account_id, o.placeholder"                \
    "  from keys k cross join lateral (select o.id, o.account_id, o.placeholder from public.opportunities o" \
    "  where o.org_id = k.org_id and o.external_id = k.opp_ext offset 0) o),"                                \
    " ins_opp as ("                                                                                          \
    " insert into public.opportunities (org_id, external_id, placeholder)"                                   \
    " select k.org_id, k.opp_ext, true from keys k where not exists (select 1 from found f"                  \
    "  where f.org_id = k.org_id and f.external_id = k.opp_ext)"                                             \
    " on conflict (org_id, external_id) do nothing"                                                          \
    " returning id, org_id, external_id, account_id, placeholder),"                                          \
    " opp as (select id, org_id, external_id, account_id, placeholder from found"                            \
    "  union all select id, org_id, external_id, account_id, placeholder from ins_opp),"                     \
    " up as ("                                                                                               \
    " insert into public." table " as t (org_id, external_id, opportunity_id,"                               \
    "  opportunity_external_id, " cols ", source_hash)"                                                      \
    " select i.org_id, i.ext, p.id, i.opp_ext, " vals ", i.source_hash"                                      \
    " from inp i left join opp p on p.org_id = i.org_id and p.external_id = i.opp_ext"                       \
    " order by i.idx"                                                                                        \
    " on conflict (org_id, external_id) do update set opportunity_id = excluded.opportunity_id,"             \
    "  opportunity_external_id = excluded.opportunity_external_id, " sets ","                                \
    "  source_hash = excluded.source_hash, ingested_at = now()"                                              \
    " where t.source_hash is distinct from excluded.source_hash"                                             \
    " returning t.org_id, t.external_id, t.opportunity_id),"                                                 \
    " ch as (select i.idx, i.org_id, i." occurred " as occurred, i.source, i.source_hash,"                   \
    "  i.traceparent, up.opportunity_id, p.account_id, not p.placeholder as pub"                             \
    "  from up join inp i on i.org_id = up.org_id and i.ext = up.external_id"                                \
    "  join opp p on p.org_id = i.org_id and p.external_id = i.opp_ext),"                                    \
    " ev as ("                                                                                               \
    " insert into dealscore_internal.outbox (" OUTBOX_COLUMNS ")"                                            \
    " select org_id, opportunity_id, account_id, '" kind "', " OUTBOX_EVENT(                                 \
        "occurred", "source", "source_hash", "traceparent") " from ch where ch.pub order by ch.idx)"         \
                                                            " select idx, pub::int from ch"

static const char *sql_interaction =
    CHILD_SQL("interactions",
              "$5::text[], $6::text[], $7::timestamptz[], $8::numeric[], $9::text[], $10::text[],"
              " $11::text[], $12::text[], $13::text[]) as i(idx, org_id, ext, opp_ext, type, channel,"
              " occurred_at, duration_min, outcome, meta, source_hash, source, traceparent",
              "type, channel, occurred_at, duration_min, outcome, meta",
              "i.type, i.channel, i.occurred_at, i.duration_min, i.outcome,"
              " coalesce(i.meta::jsonb, '{}'::jsonb)",
              "type = excluded.type, channel = excluded.channel, occurred_at = excluded.occurred_at,"
              " duration_min = excluded.duration_min, outcome = excluded.outcome, meta = excluded.meta",
              "interaction_added", "occurred_at");

static const char *sql_transcript =
    CHILD_SQL("transcripts",
              "$5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[])"
              " as i(idx, org_id, ext, opp_ext, occurred_at, text, source_hash, source, traceparent",
              "occurred_at, text", "i.occurred_at, i.text",
              "occurred_at = excluded.occurred_at, text = excluded.text", "transcript_added", "occurred_at");

#define NPARAMS_ACCOUNT 12
#define NPARAMS_OPPORTUNITY 20
#define NPARAMS_INTERACTION 13
#define NPARAMS_TRANSCRIPT 9
#define NPARAMS_MAX 20

static const struct {
    const char *name;
    const char **sql;
    int nparams;
} stmts[REC_KIND_COUNT] = {
    [REC_ACCOUNT] = {"ds_upsert_accounts", &sql_account, NPARAMS_ACCOUNT},
    [REC_OPPORTUNITY] = {"ds_upsert_opportunities", &sql_opportunity, NPARAMS_OPPORTUNITY},
    [REC_INTERACTION] = {"ds_upsert_interactions", &sql_interaction, NPARAMS_INTERACTION},
    [REC_TRANSCRIPT] = {"ds_upsert_transcripts", &sql_transcript, NPARAMS_TRANSCRIPT},
};

void store_register(ds_pg_t *pg) {
    for (int k = 0; k < REC_KIND_COUNT; k++)
        ds_pg_add_statement(pg, stmts[k].name, *stmts[k].sql, stmts[k].nparams);
}

/* ---- sets of records ---------------------------------------------------- */

typedef struct {
    const record_t *rec;
    store_tag_t *tag;
    size_t part; /* index into the set's contexts */
    size_t seq;  /* position in the set: the order records apply in */
    int round;   /* how many earlier records of the set have the same key */
} item_t;

/* The records of one statement, for the batch callback: idx -> tag. */
typedef struct {
    store_tag_t **tags;
    size_t n;
} stmt_t;

struct store_set_s {
    store_ctx_t *ctxs;
    size_t nctxs, capctxs;
    item_t *items;
    size_t n, cap;
    stmt_t **stmts;
    size_t nstmts, capstmts;
};

store_set_t *store_set_new(void) { return ds_calloc(1, sizeof(store_set_t)); }

void store_set_destroy(store_set_t *s) {
    if (!s) return;
    for (size_t i = 0; i < s->nstmts; i++) {
        free(s->stmts[i]->tags);
        free(s->stmts[i]);
    }
    free(s->stmts);
    free(s->items);
    free(s->ctxs);
    free(s);
}

void store_set_add(store_set_t *s, const store_ctx_t *ctx, const record_t *recs, size_t n,
                   store_tag_t *tags) {
    if (s->nctxs == s->capctxs) {
        s->capctxs = s->capctxs ? s->capctxs * 2 : 8;
        s->ctxs = ds_realloc(s->ctxs, s->capctxs * sizeof *s->ctxs);
    }
    s->ctxs[s->nctxs] = *ctx;
    for (size_t i = 0; i < n; i++) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->items = ds_realloc(s->items, s->cap * sizeof *s->items);
        }
        memset(&tags[i], 0, sizeof tags[i]);
        s->items[s->n] = (item_t){&recs[i], &tags[i], s->nctxs, s->n, 0};
        s->n++;
    }
    s->nctxs++;
}

/* Order for finding repeated keys: kind, org, external id, then position. */
static int cmp_key(const void *a, const void *b, void *ud) {
    const store_set_t *s = ud;
    const item_t *x = *(item_t *const *)a, *y = *(item_t *const *)b;
    if (x->rec->kind != y->rec->kind) return x->rec->kind < y->rec->kind ? -1 : 1;
    int c = strcmp(s->ctxs[x->part].org_id, s->ctxs[y->part].org_id);
    if (c) return c;
    c = strcmp(x->rec->external_id, y->rec->external_id);
    if (c) return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Text of the values the statements take: formatted numbers and times live
 * here until the arrays are built. */
typedef struct {
    char (*buf)[48];
    size_t used, cap;
} scratch_t;

static const char *ts(scratch_t *s, int64_t us) {
    if (!us) return NULL;
    ds_assert(s->used < s->cap);
    ds_format_time_us(us, s->buf[s->used], sizeof s->buf[0]);
    return s->buf[s->used++];
}

static const char *num(scratch_t *s, bool has, double v) {
    if (!has) return NULL;
    ds_assert(s->used < s->cap);
    snprintf(s->buf[s->used], sizeof s->buf[0], "%.17g", v);
    return s->buf[s->used++];
}

static const char *integer(scratch_t *s, long v) {
    ds_assert(s->used < s->cap);
    snprintf(s->buf[s->used], sizeof s->buf[0], "%ld", v);
    return s->buf[s->used++];
}

/* Queues one statement for the records its[0..n) (all of one kind, no key
 * twice). */
static int queue_stmt(store_set_t *s, ds_pg_batch_t *b, rec_kind_t kind, item_t **its, size_t n) {
    const int np = stmts[kind].nparams;
    const char **cols = ds_calloc((size_t)np * n, sizeof *cols); /* cols[p * n + i] */
    scratch_t sc = {ds_calloc(n * 7, sizeof *sc.buf), 0, n * 7};
    stmt_t *st = ds_calloc(1, sizeof *st);
    st->tags = ds_calloc(n, sizeof *st->tags);
    st->n = n;
#define COL(p) cols[(size_t)(p)*n + i]
    for (size_t i = 0; i < n; i++) {
        const record_t *r = its[i]->rec;
        const store_ctx_t *ctx = &s->ctxs[its[i]->part];
        st->tags[i] = its[i]->tag;
        COL(0) = integer(&sc, (long)i);
        COL(1) = ctx->org_id;
        COL(2) = r->external_id;
        switch (kind) {
        case REC_ACCOUNT: {
            const char *v[] = {
                r->name,        r->industry, r->region,        r->size_band,        ts(&sc, r->created_at_us),
                r->source_hash, ctx->source, ctx->traceparent, ts(&sc, ctx->now_us)};
            for (int p = 0; p < 9; p++) COL(3 + p) = v[p];
            break;
        }
        case REC_OPPORTUNITY: {
            const char *outcome =
                r->outcome ? r->outcome : record_stage_outcome(r->stage, ctx->stage_outcome);
            int64_t closed = r->closed_at_us;
            /* A closed deal without a close time closed when the change was made. */
            if (!closed && strcmp(outcome, "open") != 0)
                closed = r->changed_at_us ? r->changed_at_us : ctx->now_us;
            const char *v[] = {r->account_external_id,
                               r->owner_id,
                               r->product_category,
                               r->persona,
                               num(&sc, r->has_amount, r->amount),
                               r->currency,
                               r->stage,
                               ts(&sc, r->created_at_us),
                               r->close_date[0] ? r->close_date : NULL,
                               ts(&sc, closed),
                               outcome,
                               r->source_hash,
                               ctx->source,
                               ctx->traceparent,
                               ts(&sc, r->changed_at_us),
                               ts(&sc, ctx->now_us),
                               num(&sc, r->has_stage_probability, r->stage_probability)};
            for (int p = 0; p < 17; p++) COL(3 + p) = v[p];
            break;
        }
        case REC_INTERACTION: {
            const char *v[] = {r->opportunity_external_id,
                               r->type,
                               r->channel,
                               ts(&sc, r->occurred_at_us),
                               num(&sc, r->has_duration, r->duration_min),
                               r->result,
                               r->meta_json,
                               r->source_hash,
                               ctx->source,
                               ctx->traceparent};
            for (int p = 0; p < 10; p++) COL(3 + p) = v[p];
            break;
        }
        case REC_TRANSCRIPT: {
            const char *v[] = {r->opportunity_external_id,
                               ts(&sc, r->occurred_at_us),
                               r->text,
                               r->source_hash,
                               ctx->source,
                               ctx->traceparent};
            for (int p = 0; p < 6; p++) COL(3 + p) = v[p];
            break;
        }
        default: ds_panic("record kind %d", (int)kind);
        }
    }
#undef COL
    char *arrays[NPARAMS_MAX];
    for (int p = 0; p < np; p++) arrays[p] = ds_pg_array_text(&cols[(size_t)p * n], n);
    if (s->nstmts == s->capstmts) {
        s->capstmts = s->capstmts ? s->capstmts * 2 : 4;
        s->stmts = ds_realloc(s->stmts, s->capstmts * sizeof *s->stmts);
    }
    s->stmts[s->nstmts++] = st; /* now owned by the set */
    int rc = ds_pg_batch_add_prepared(b, stmts[kind].name, np, (const char *const *)arrays, NULL, NULL, st);
    for (int p = 0; p < np; p++) free(arrays[p]);
    free(sc.buf);
    free(cols);
    return rc;
}

int store_set_queue(store_set_t *s, ds_pg_batch_t *b) {
    if (!s->n) return DS_OK;
    for (size_t i = 0; i < s->n; i++)
        if ((unsigned)s->items[i].rec->kind >= REC_KIND_COUNT) return DS_EINVAL;
    /* A key that repeats must apply in order, and one statement can change
     * a row only once: number the repeats (round 0 for a key's first
     * record, 1 for its second...) and give every round its own statement. */
    item_t **byk = ds_calloc(s->n, sizeof *byk);
    for (size_t i = 0; i < s->n; i++) byk[i] = &s->items[i];
    qsort_r(byk, s->n, sizeof *byk, cmp_key, s);
    int rounds = 1;
    for (size_t i = 1; i < s->n; i++) {
        const item_t *p = byk[i - 1];
        if (p->rec->kind == byk[i]->rec->kind &&
            strcmp(s->ctxs[p->part].org_id, s->ctxs[byk[i]->part].org_id) == 0 &&
            strcmp(p->rec->external_id, byk[i]->rec->external_id) == 0) {
            byk[i]->round = p->round + 1;
            if (byk[i]->round + 1 > rounds) rounds = byk[i]->round + 1;
        }
    }
    /* Kinds in parent-to-child order: the requests of a group are
     * concurrent, so applying the accounts before the opportunities before
     * their interactions is one of the orders they could have come in. */
    item_t **its = byk; /* reused: one statement's records in set order */
    int rc = DS_OK;
    for (int k = 0; k < REC_KIND_COUNT && rc == DS_OK; k++) {
        for (int r = 0; r < rounds && rc == DS_OK; r++) {
            size_t m = 0;
            for (size_t i = 0; i < s->n; i++)
                if (s->items[i].rec->kind == (rec_kind_t)k && s->items[i].round == r) its[m++] = &s->items[i];
            if (m) rc = queue_stmt(s, b, (rec_kind_t)k, its, m);
        }
    }
    free(byk);
    return rc;
}

int store_batch_cb(void *ud, void *tag, const PGresult *res, int err) {
    (void)ud;
    stmt_t *st = tag;
    if (!st || err != DS_OK) return DS_OK; /* the batch reports the first error itself */
    if (PQresultStatus(res) != PGRES_TUPLES_OK) return DS_OK;
    for (int row = 0; row < PQntuples(res); row++) {
        long idx = strtol(PQgetvalue(res, row, 0), NULL, 10);
        ds_assert(idx >= 0 && (size_t)idx < st->n);
        st->tags[idx]->changed = 1;
        st->tags[idx]->events = atoi(PQgetvalue(res, row, 1));
    }
    for (size_t i = 0; i < st->n; i++) st->tags[i]->done = 1;
    return DS_OK;
}

void store_collect(const store_tag_t *tags, size_t n, store_counts_t *c) {
    for (size_t i = 0; i < n; i++) {
        if (tags[i].changed)
            c->changed++;
        else
            c->unchanged++;
        c->events += tags[i].events;
    }
}

int store_org_by_slug(ds_pg_t *pg, const char *slug, bool create, char org_id[37], char *errstr,
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
        rc = ds_pg_exec_params(pg, "select id from public.orgs where slug = $1", 1, v, NULL, NULL, &res,
                               errstr, errstr_size);
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

json_t *store_org_stage_outcome(ds_pg_t *pg, const char *org_id) {
    PGresult *res = NULL;
    char err[256];
    const char *v[] = {org_id};
    if (ds_pg_exec_params(pg, "select settings->'stage_outcome' from public.orgs where id = $1::uuid", 1, v,
                          NULL, NULL, &res, err, sizeof err) != 0)
        return NULL;
    json_t *m = NULL;
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) m = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    return m;
}
