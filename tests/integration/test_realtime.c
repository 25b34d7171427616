/* Supabase Realtime's source: the supabase_realtime publication streams
 * changes of predictions, with org_id in every change (the new row of an
 * INSERT or UPDATE, the replica identity (opportunity_id, org_id) of a
 * DELETE), and nothing of tables outside it. Read through a logical
 * replication slot with pgoutput, the plugin Realtime uses, and decoded
 * here (protocol version 1). Needs wal_level=logical. */
#include <arpa/inet.h>
#include <stdint.h>

#include "pgtest.h"

#define ORG_A "a0000000-0000-4000-8000-000000000001"
#define ACC_A1 "a0000000-0000-4000-8000-0000000000a1"
#define OPP_A1 "a0000000-0000-4000-8000-00000000a001"

static pgt_db_t db;
static PGconn *conn;
static char slot[sizeof db.name + 3]; /* the database's name and "_rt" */

static void setup(void) {
    PGconn *admin = pgt_connect(pgt_admin_url());
    char *level = pgt_valuef(admin, "show wal_level");
    PQfinish(admin);
    if (strcmp(level, "logical") != 0)
        cr_fatal("the server has wal_level=%s: logical decoding (Supabase Realtime) needs "
                 "wal_level=logical; the test stack sets it",
                 level);
    free(level);

    pgt_db_create(&db);
    pgt_migrate_ok(&db);
    conn = pgt_connect_db(&db);
    pgt_exec(conn, "insert into orgs (id, slug) values ('" ORG_A "', 'org-a');"
                   "insert into accounts (id, org_id, external_id, name)"
                   " values ('" ACC_A1 "', '" ORG_A "', 'acc-1', 'Acme');"
                   "insert into opportunities (id, org_id, external_id, account_id, stage,"
                   " created_at) values ('" OPP_A1 "', '" ORG_A "', 'opp-1', '" ACC_A1 "',"
                   " 'Prospecting', now())");
    /* The slot starts here: only the changes below are decoded. */
    snprintf(slot, sizeof slot, "%s_rt", db.name);
    pgt_execf(conn, "select pg_create_logical_replication_slot('%s', 'pgoutput')", slot);
}

static void teardown(void) {
    if (conn) {
        /* A slot keeps its database from being dropped. */
        char *sql = pgt_fmt("select pg_drop_replication_slot(slot_name)"
                            " from pg_replication_slots where slot_name = '%s'",
                            slot);
        PQclear(PQexec(conn, sql));
        free(sql);
        PQfinish(conn);
        conn = NULL;
    }
    pgt_db_drop(&db);
}

TestSuite(realtime, .init = setup, .fini = teardown, .timeout = 120);

/* ---- a small pgoutput (protocol version 1) decoder ---------------------- */

#define MAX_COLS 32
#define MAX_RELS 16
#define MAX_CHANGES 64

typedef struct {
    uint32_t oid;
    char ns[64];
    char name[64];
    char replident; /* 'd' default, 'f' full, 'i' index, 'n' nothing */
    int ncols;
    char cols[MAX_COLS][64];
} rel_t;

typedef struct {
    int n;                /* -1: no tuple */
    char *vals[MAX_COLS]; /* NULL for SQL NULL or unchanged TOAST */
} tuple_t;

typedef struct {
    char kind; /* 'I', 'U', 'D' */
    uint32_t oid;
    tuple_t old; /* 'O' (full old row) or 'K' (key) tuple */
    char old_kind;
    tuple_t new;
} change_t;

typedef struct {
    rel_t rels[MAX_RELS];
    int nrels;
    change_t changes[MAX_CHANGES];
    int nchanges;
} stream_t;

typedef struct {
    const unsigned char *p, *end;
} reader_t;

static uint8_t rd_u8(reader_t *r) {
    cr_assert_lt(r->p, r->end, "pgoutput message truncated");
    return *r->p++;
}

static uint16_t rd_u16(reader_t *r) {
    cr_assert_geq(r->end - r->p, 2, "pgoutput message truncated");
    uint16_t v;
    memcpy(&v, r->p, 2);
    r->p += 2;
    return ntohs(v);
}

static uint32_t rd_u32(reader_t *r) {
    cr_assert_geq(r->end - r->p, 4, "pgoutput message truncated");
    uint32_t v;
    memcpy(&v, r->p, 4);
    r->p += 4;
    return ntohl(v);
}

static void rd_str(reader_t *r, char *out, size_t outsz) {
    const unsigned char *nul = memchr(r->p, '\0', (size_t)(r->end - r->p));
    cr_assert_not_null(nul, "pgoutput string not terminated");
    snprintf(out, outsz, "%s", (const char *)r->p);
    r->p = nul + 1;
}

static void rd_tuple(reader_t *r, tuple_t *t) {
    t->n = rd_u16(r);
    cr_assert_leq(t->n, MAX_COLS, "too many columns in a tuple");
    for (int i = 0; i < t->n; i++) {
        char k = (char)rd_u8(r);
        t->vals[i] = NULL;
        if (k == 't') {
            uint32_t len = rd_u32(r);
            cr_assert_geq((size_t)(r->end - r->p), (size_t)len, "pgoutput value truncated");
            t->vals[i] = pgt_fmt("%.*s", (int)len, (const char *)r->p);
            r->p += len;
        } else {
            cr_assert(k == 'n' || k == 'u', "unknown tuple column kind '%c'", k);
        }
    }
}

/* Decodes one pgoutput message into s. */
static void decode(stream_t *s, const unsigned char *msg, size_t len) {
    reader_t r = {msg, msg + len};
    char type = (char)rd_u8(&r);
    switch (type) {
    case 'R': {
        uint32_t oid = rd_u32(&r);
        rel_t *rel = NULL;
        for (int i = 0; i < s->nrels; i++)
            if (s->rels[i].oid == oid) rel = &s->rels[i];
        if (!rel) {
            cr_assert_lt(s->nrels, MAX_RELS, "too many relations in the stream");
            rel = &s->rels[s->nrels++];
        }
        rel->oid = oid;
        rd_str(&r, rel->ns, sizeof rel->ns);
        rd_str(&r, rel->name, sizeof rel->name);
        rel->replident = (char)rd_u8(&r);
        rel->ncols = rd_u16(&r);
        cr_assert_leq(rel->ncols, MAX_COLS, "too many columns in %s", rel->name);
        for (int i = 0; i < rel->ncols; i++) {
            rd_u8(&r); /* flags */
            rd_str(&r, rel->cols[i], sizeof rel->cols[i]);
            rd_u32(&r); /* type oid */
            rd_u32(&r); /* type modifier */
        }
        break;
    }
    case 'I':
    case 'U':
    case 'D': {
        cr_assert_lt(s->nchanges, MAX_CHANGES, "too many changes in the stream");
        change_t *c = &s->changes[s->nchanges++];
        memset(c, 0, sizeof *c);
        c->kind = type;
        c->oid = rd_u32(&r);
        c->old.n = -1;
        c->new.n = -1;
        char k = (char)rd_u8(&r);
        if (type != 'I' && (k == 'K' || k == 'O')) {
            c->old_kind = k;
            rd_tuple(&r, &c->old);
            if (type == 'U') k = (char)rd_u8(&r);
        }
        if (type != 'D') {
            cr_assert_eq(k, 'N', "expected a new tuple in a '%c' message, got '%c'", type, k);
            rd_tuple(&r, &c->new);
        }
        break;
    }
    default:
        /* Begin, commit, origin, type, truncate and messages carry nothing
         * this test checks. */
        break;
    }
}

static void stream_free(stream_t *s) {
    for (int i = 0; i < s->nchanges; i++)
        for (int j = 0; j < MAX_COLS; j++) {
            if (s->changes[i].old.n > j) free(s->changes[i].old.vals[j]);
            if (s->changes[i].new.n > j) free(s->changes[i].new.vals[j]);
        }
    s->nchanges = 0;
}

static const rel_t *rel_of(const stream_t *s, uint32_t oid) {
    for (int i = 0; i < s->nrels; i++)
        if (s->rels[i].oid == oid) return &s->rels[i];
    cr_fatal("a change refers to relation %u that was never described", oid);
    return NULL;
}

/* The value of column col in tuple t of relation rel; "(absent)" if the
 * tuple has no such column, NULL for SQL NULL. */
static const char *col(const rel_t *rel, const tuple_t *t, const char *name) {
    for (int i = 0; i < rel->ncols && i < t->n; i++)
        if (strcmp(rel->cols[i], name) == 0) return t->vals[i];
    return "(absent)";
}

/* Reads all pending changes of the slot into s (consuming them). */
static void read_slot(stream_t *s) {
    char *sql = pgt_fmt("select data from pg_logical_slot_get_binary_changes('%s', NULL, NULL,"
                        " 'proto_version', '1', 'publication_names', 'supabase_realtime')",
                        slot);
    /* Binary results: bytea comes back as raw bytes. */
    PGresult *r = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        cr_fatal("could not read the replication slot: %s", PQresultErrorMessage(r));
    for (int i = 0; i < PQntuples(r); i++)
        decode(s, (const unsigned char *)PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
    PQclear(r);
    free(sql);
}

/* Polls the slot until a change of kind on public.<table> arrives, up to
 * timeout_ms. Returns its index in s->changes, or -1 at the deadline. */
static int wait_change(stream_t *s, char kind, const char *table, int from, int timeout_ms) {
    long long deadline = pgt_now_ms() + timeout_ms;
    for (;;) {
        for (int i = from; i < s->nchanges; i++) {
            const rel_t *rel = rel_of(s, s->changes[i].oid);
            if (s->changes[i].kind == kind && strcmp(rel->ns, "public") == 0 && strcmp(rel->name, table) == 0)
                return i;
        }
        if (pgt_now_ms() > deadline) return -1;
        int before = s->nchanges;
        read_slot(s);
        if (s->nchanges == before) {
            /* Nothing new: wait for WAL activity rather than spinning. */
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
}

Test(realtime, predictions_stream_with_org_id_in_every_change) {
    static stream_t s;
    pgt_exec(conn, "insert into predictions (org_id, opportunity_id, account_id, as_of,"
                   " model_version, proba_close, top_features)"
                   " values ('" ORG_A "', '" OPP_A1 "', '" ACC_A1 "', now(), 'stage-prior', 0.25,"
                   " '[{\"name\": \"stage_index\", \"contribution\": -0.4}]')");
    /* Not in the publication: must never reach Realtime. */
    pgt_exec(conn, "insert into dealscore_internal.outbox (org_id, opportunity_id, kind)"
                   " values ('" ORG_A "', '" OPP_A1 "', 'opportunity.changed')");
    pgt_exec(conn, "update predictions set previous_proba = proba_close, proba_close = 0.6,"
                   " updated_at = now() where opportunity_id = '" OPP_A1 "'");
    pgt_exec(conn, "delete from predictions where opportunity_id = '" OPP_A1 "'");

    int ins = wait_change(&s, 'I', "predictions", 0, 10000);
    cr_assert_geq(ins, 0, "no insert on predictions came through the publication in 10 s");
    const rel_t *rel = rel_of(&s, s.changes[ins].oid);
    cr_assert_eq(rel->replident, 'i', "predictions has replica identity '%c', want its identity index",
                 rel->replident);
    const char *org = col(rel, &s.changes[ins].new, "org_id");
    cr_assert_not_null(org, "the inserted row has no org_id");
    cr_assert_str_eq(org, ORG_A, "the inserted row carries the wrong org_id");
    cr_assert_str_eq(col(rel, &s.changes[ins].new, "opportunity_id"), OPP_A1);
    cr_assert_str_eq(col(rel, &s.changes[ins].new, "proba_close"), "0.25");

    int upd = wait_change(&s, 'U', "predictions", ins + 1, 10000);
    cr_assert_geq(upd, 0, "no update on predictions came through in 10 s");
    /* The identity did not change: no old tuple, the new row says it all. */
    cr_assert_eq(s.changes[upd].old_kind, 0, "the update carries an old tuple ('%c')",
                 s.changes[upd].old_kind);
    cr_assert_str_eq(col(rel, &s.changes[upd].new, "org_id"), ORG_A, "the updated row lacks org_id");
    cr_assert_str_eq(col(rel, &s.changes[upd].new, "opportunity_id"), OPP_A1);
    cr_assert_str_eq(col(rel, &s.changes[upd].new, "proba_close"), "0.6");
    cr_assert_str_eq(col(rel, &s.changes[upd].new, "previous_proba"), "0.25");

    int del = wait_change(&s, 'D', "predictions", upd + 1, 10000);
    cr_assert_geq(del, 0, "no delete on predictions came through in 10 s");
    cr_assert_eq(s.changes[del].old_kind, 'K', "the delete carries no identity ('%c')",
                 s.changes[del].old_kind);
    cr_assert_str_eq(col(rel, &s.changes[del].old, "org_id"), ORG_A,
                     "the identity of the delete lacks org_id");
    cr_assert_str_eq(col(rel, &s.changes[del].old, "opportunity_id"), OPP_A1,
                     "the identity of the delete lacks opportunity_id");

    /* The outbox insert committed before the update, so the stream has
     * passed it: it must not be there. */
    for (int i = 0; i < s.nrels; i++)
        cr_assert(strcmp(s.rels[i].name, "outbox") != 0, "outbox is streamed through supabase_realtime");
    for (int i = 0; i < s.nchanges; i++)
        cr_assert_str_eq(rel_of(&s, s.changes[i].oid)->name, "predictions",
                         "a table other than predictions is streamed");
    stream_free(&s);
}

Test(realtime, publication_has_predictions_and_deal_risks_and_no_internal_tables) {
    cr_assert_eq(pgt_longf(conn, "select count(*) from pg_publication_tables"
                                 " where pubname = 'supabase_realtime'"
                                 " and schemaname = 'public' and tablename = 'predictions'"),
                 1, "predictions is not in supabase_realtime");
    cr_assert_eq(pgt_longf(conn, "select count(*) from pg_publication"
                                 " where pubname = 'supabase_realtime' and puballtables"),
                 0, "supabase_realtime publishes all tables");
    static const char *const internal[] = {"outbox", "ingest_tokens", "models", "schema_migrations",
                                           "account_members"};
    for (size_t i = 0; i < PGT_N(internal); i++)
        cr_assert_eq(pgt_longf(conn,
                               "select count(*) from pg_publication_tables"
                               " where pubname = 'supabase_realtime'"
                               " and tablename = '%s'",
                               internal[i]),
                     0, "%s is in supabase_realtime", internal[i]);
    /* Each open deal's risks stream the same way, with org_id in every change. */
    cr_assert_eq(pgt_longf(conn, "select count(*) from pg_publication_tables"
                                 " where pubname = 'supabase_realtime'"
                                 " and schemaname = 'public' and tablename = 'deal_risks'"),
                 1, "deal_risks is not in supabase_realtime");
    cr_assert_eq(pgt_longf(conn,
                           "select count(*) from pg_index i join pg_attribute a on a.attrelid = i.indrelid"
                           " and a.attnum = any (i.indkey) where i.indrelid = 'public.deal_risks'::regclass"
                           " and i.indisreplident and a.attname = 'org_id'"),
                 1, "deal_risks' replica identity lacks org_id");
    cr_assert_eq(pgt_longf(conn, "select relrowsecurity::int from pg_class"
                                 " where oid = 'public.deal_risks'::regclass"),
                 1, "deal_risks has no row level security");
    /* Realtime filters each change through RLS: the table must have it. */
    cr_assert_eq(pgt_longf(conn, "select relrowsecurity::int from pg_class"
                                 " where oid = 'public.predictions'::regclass"),
                 1, "predictions has no row level security");
}
