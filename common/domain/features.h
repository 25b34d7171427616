/* The point-in-time feature engine: given one opportunity's raw rows and an
 * as_of time, the feature vector built only from facts known at as_of. The
 * feature worker, /api/predict and the trainer all call ds_features_compute,
 * so training, streaming and on-demand scores cannot disagree.
 *
 * Pure in-memory code: no I/O, no global mutable state. Every input pointer
 * is borrowed for the duration of the call (and by the MEDDICC evidence in
 * the output, see ds_feature_vec_t).
 *
 * What "known at as_of" means (inclusive: a fact dated exactly as_of counts):
 * - interactions and transcripts with occurred_at <= as_of;
 * - stage, amount and close date: the new value of the latest
 *   opportunity_history row of that field with changed_at <= as_of; when all
 *   of the field's rows are later, the old value of the earliest one (the
 *   value in force until that change, so still a fact of as_of; ingest writes
 *   the creation row with no old value, which makes the field unknown before
 *   it). A field with no history rows at all falls back to the opportunity's
 *   current value, but only when the row's changed_at is unknown or <= as_of.
 *   A stage in force since before the first recorded change counts as
 *   entered at created_at. Rows of other fields ("outcome") are ignored;
 * - account and owner win rates, and their engagement (interactions per
 *   working day, email reply rate), from deals closed strictly before as_of;
 * - the outcome and closed_at of the opportunity itself: never (they are in
 *   ds_opp_raw_t for the trainer's convenience and are not read).
 *
 * Durations in days are rounded to the nearest millionth of a day (86.4 ms):
 * short decimals that print and read back exactly.
 *
 * Categorical encoding (industry, region, size band, product category,
 * persona): the value is normalized (ASCII lowercased, trimmed, each run of
 * whitespace, '_' or '-' turned into one space), hashed with 64-bit FNV-1a,
 * and the top 24 bits become the code, an integer in [0, 16777215] stored as
 * a double. 24 bits keep the code exact in the float32 matrices XGBoost uses;
 * the code is stable across processes, versions and orgs, and an unseen
 * category simply gets its own code (trees route it by threshold like any
 * other value). Missing or empty is NaN. See ds_feature_category_code.
 */
#ifndef DEALSCORE_FEATURES_H
#define DEALSCORE_FEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/meddicc.h"

/* Bump whenever a definition below changes (name, meaning, encoding). */
#define DS_FEATURE_VERSION "fv4"

/* "No time": an unknown or cleared timestamp. */
#define DS_TIME_NONE INT64_MIN
#define DS_US_PER_DAY (86400LL * 1000000LL)

/* Prior-win-rate smoothing: (wins + m * org_rate) / (closed + m). */
#define DS_WINRATE_SMOOTHING 5.0

/* The feature table: X(ID, name, family, unit, label, missing). The one
 * definition of every feature; the enum, the catalog JSON and the output
 * JSON are generated from it, in this order. */
#define DS_FEATURES(X)                                                                                       \
    X(DAYS_OPEN, "days_open", "temporal", "days", "Days open",                                               \
      "never (negative when as_of precedes created_at; NaN only without created_at)")                        \
    X(DAYS_TO_CLOSE, "days_to_close", "temporal", "days", "Days to expected close date",                     \
      "NaN when no close date is known at as_of; negative when overdue")                                     \
    X(CLOSE_DATE_PUSHES, "close_date_pushes", "temporal", "count", "Close date pushes",                      \
      "0 when the close date never moved later")                                                             \
    X(DAYS_IN_STAGE, "days_in_stage", "temporal", "days", "Days in current stage",                           \
      "NaN when the stage or the time it was entered is unknown")                                            \
    X(STAGE_INDEX, "stage_index", "temporal", "index", "Stage",                                              \
      "NaN when the stage is unknown or not in the stage list")                                              \
    X(STAGE_REGRESSIONS, "stage_regressions", "temporal", "count", "Stage regressions",                      \
      "0 when the stage never moved back")                                                                   \
    X(AMOUNT_LOG, "amount_log", "temporal", "log_currency", "Deal amount (log)",                             \
      "NaN when no amount (>= 0) is known; value is ln(1 + amount)")                                         \
    X(AMOUNT_CHANGE_RATIO, "amount_change_ratio", "temporal", "ratio", "Amount vs first known amount",       \
      "NaN when either amount is unknown or the first is 0; 1 without amount history")                       \
    X(N_EMAIL_14D, "n_email_14d", "interaction", "count", "Emails, last 14 days", "0 when none")             \
    X(N_EMAIL_30D, "n_email_30d", "interaction", "count", "Emails, last 30 days", "0 when none")             \
    X(N_EMAIL_ALL, "n_email_all", "interaction", "count", "Emails, all time", "0 when none")                 \
    X(N_PHONE_14D, "n_phone_14d", "interaction", "count", "Calls, last 14 days", "0 when none")              \
    X(N_PHONE_30D, "n_phone_30d", "interaction", "count", "Calls, last 30 days", "0 when none")              \
    X(N_PHONE_ALL, "n_phone_all", "interaction", "count", "Calls, all time", "0 when none")                  \
    X(N_MEETING_14D, "n_meeting_14d", "interaction", "count", "Meetings, last 14 days", "0 when none")       \
    X(N_MEETING_30D, "n_meeting_30d", "interaction", "count", "Meetings, last 30 days", "0 when none")       \
    X(N_MEETING_ALL, "n_meeting_all", "interaction", "count", "Meetings, all time", "0 when none")           \
    X(N_DEMO_14D, "n_demo_14d", "interaction", "count", "Demos, last 14 days", "0 when none")                \
    X(N_DEMO_30D, "n_demo_30d", "interaction", "count", "Demos, last 30 days", "0 when none")                \
    X(N_DEMO_ALL, "n_demo_all", "interaction", "count", "Demos, all time", "0 when none")                    \
    X(N_SUPPORT_14D, "n_support_14d", "interaction", "count", "Support contacts, last 14 days",              \
      "0 when none")                                                                                         \
    X(N_SUPPORT_30D, "n_support_30d", "interaction", "count", "Support contacts, last 30 days",              \
      "0 when none")                                                                                         \
    X(N_SUPPORT_ALL, "n_support_all", "interaction", "count", "Support contacts, all time", "0 when none")   \
    X(DAYS_SINCE_LAST_INTERACTION, "days_since_last_interaction", "interaction", "days",                     \
      "Days since last interaction", "NaN when there is no interaction at as_of")                            \
    X(DAYS_SINCE_LAST_MEETING, "days_since_last_meeting", "interaction", "days", "Days since last meeting",  \
      "NaN when there is no meeting at as_of")                                                               \
    X(MEETING_MINUTES_30D, "meeting_minutes_30d", "interaction", "minutes", "Meeting minutes, last 30 days", \
      "0 when none; a meeting without a duration adds 0")                                                    \
    X(VELOCITY_14D, "velocity_14d", "interaction", "ratio",                                                  \
      "Interactions, last 14 days vs the 14 days before",                                                    \
      "never: (n in (as_of-14d, as_of] + 1) / (n in (as_of-28d, as_of-14d] + 1)")                            \
    X(INDUSTRY_CODE, "industry_code", "firmographic", "code", "Industry", "NaN when empty")                  \
    X(REGION_CODE, "region_code", "firmographic", "code", "Region", "NaN when empty")                        \
    X(SIZE_BAND_CODE, "size_band_code", "firmographic", "code", "Company size", "NaN when empty")            \
    X(PRODUCT_CATEGORY_CODE, "product_category_code", "firmographic", "code", "Product category",            \
      "NaN when empty")                                                                                      \
    X(PERSONA_CODE, "persona_code", "firmographic", "code", "Buyer persona", "NaN when empty")               \
    X(ACCOUNT_WIN_RATE, "account_win_rate", "firmographic", "rate", "Account's prior win rate (smoothed)",   \
      "NaN without an account or win-rate data; the org rate when the account has no "                       \
      "closed deals")                                                                                        \
    X(OWNER_WIN_RATE, "owner_win_rate", "firmographic", "rate", "Owner's prior win rate (smoothed)",         \
      "NaN without an owner or win-rate data; the org rate when the owner has no closed deals")              \
    X(ACCOUNT_CLOSED_DEALS, "account_closed_deals", "firmographic", "count",                                 \
      "Account's deals closed before", "NaN without an account or win-rate data")                            \
    X(OWNER_CLOSED_DEALS, "owner_closed_deals", "firmographic", "count", "Owner's deals closed before",      \
      "NaN without an owner or win-rate data")                                                               \
    X(MEDDICC_METRICS, "meddicc_metrics", "meddicc", "flag", "MEDDICC: metrics",                             \
      "0 when not detected (also without transcripts)")                                                      \
    X(MEDDICC_ECONOMIC_BUYER, "meddicc_economic_buyer", "meddicc", "flag", "MEDDICC: economic buyer",        \
      "0 when not detected (also without transcripts)")                                                      \
    X(MEDDICC_DECISION_CRITERIA, "meddicc_decision_criteria", "meddicc", "flag",                             \
      "MEDDICC: decision criteria", "0 when not detected (also without transcripts)")                        \
    X(MEDDICC_DECISION_PROCESS, "meddicc_decision_process", "meddicc", "flag", "MEDDICC: decision process",  \
      "0 when not detected (also without transcripts)")                                                      \
    X(MEDDICC_PAPER_PROCESS, "meddicc_paper_process", "meddicc", "flag", "MEDDICC: paper process",           \
      "0 when not detected (also without transcripts)")                                                      \
    X(MEDDICC_IDENTIFY_PAIN, "meddicc_identify_pain", "meddicc", "flag", "MEDDICC: identified pain",         \
      "0 when not detected (also without transcripts)")                                                      \
    X(MEDDICC_CHAMPION, "meddicc_champion", "meddicc", "flag", "MEDDICC: champion",                          \
      "0 when not detected (also without transcripts)")                                                      \
    X(MEDDICC_COMPETITION, "meddicc_competition", "meddicc", "flag", "MEDDICC: competition",                 \
      "0 when not detected (also without transcripts)")                                                      \
    X(MEDDICC_COVERAGE, "meddicc_coverage", "meddicc", "count", "MEDDICC coverage (of 8)",                   \
      "0 when nothing is detected")                                                                          \
    X(N_TRANSCRIPTS, "n_transcripts", "meddicc", "count", "Call transcripts", "0 when none")                 \
    X(BUYER_CONTACTS, "buyer_contacts", "interaction", "count", "Buyer contacts engaged",                    \
      "0 when none is known (no transcript speaker but the rep, no interaction naming a contact)")           \
    X(EMAIL_REPLY_RATE, "email_reply_rate", "interaction", "rate", "Email reply rate",                       \
      "never: (emails answered + 1) / (emails answered or unanswered + 2); 0.5 without any")                 \
    X(SEGMENT_WIN_RATE, "segment_win_rate", "firmographic", "rate",                                          \
      "Win rate of the industry and product (smoothed)",                                                     \
      "NaN without industry, product or win-rate data; the org rate when the pair has no closed deals")      \
    X(AMOUNT_VS_COHORT, "amount_vs_cohort", "firmographic", "log_ratio",                                     \
      "Amount vs the size band and product's closed deals",                                                  \
      "NaN without a positive amount, size band, product or a closed deal of that pair: "                    \
      "ln(amount) - the mean ln(amount) of the pair's deals closed before")                                  \
    X(ACCOUNT_REPLY_RATE, "account_reply_rate", "firmographic", "rate",                                      \
      "Account's email reply rate (smoothed)",                                                               \
      "NaN without an account or win-rate data; the org rate when the account has no closed deals")          \
    X(OWNER_ACTIVITY_RATE, "owner_activity_rate", "firmographic", "rate",                                    \
      "Owner's activity per working day (smoothed)",                                                         \
      "NaN without an owner or win-rate data; the org rate when the owner has no closed deals")              \
    X(OWNER_REPLY_RATE, "owner_reply_rate", "firmographic", "rate", "Owner's email reply rate (smoothed)",   \
      "NaN without an owner or win-rate data; the org rate when the owner has no closed deals")

typedef enum {
#define DS__FEATURE_ENUM(id, name, family, unit, label, missing) DS_F_##id,
    DS_FEATURES(DS__FEATURE_ENUM)
#undef DS__FEATURE_ENUM
        DS_FEATURE_COUNT
} ds_feature_id_t;

/* Catalog lookups. Name and label are static strings; NULL out of range. */
const char *ds_feature_name(int id);
const char *ds_feature_label(int id);
/* Returns the feature's index, or -1 when no feature has that name. */
int ds_feature_index(const char *name);

/* The catalog as deterministic JSON: version, encoding, default stage order
 * and every feature {index, name, family, unit, label, missing}. Returns a
 * string the caller frees with free(); never NULL. */
char *ds_features_catalog_json(void);

/* The categorical code described above, or NaN for NULL or an empty value. */
double ds_feature_category_code(const char *value);

/* ---- stage order ---------------------------------------------------------- */

typedef struct {
    const char *name; /* compared normalized: ASCII lowercased, non-alphanumeric runs as '_' */
    int index;        /* >= 0; several stages may share one (closed_won, closed_lost) */
} ds_stage_def_t;

typedef struct ds_stage_list ds_stage_list_t;

/* Builds a stage list (copies the names). Returns 0 and sets *out (free with
 * ds_stage_list_destroy) or DS_EINVAL with a sentence in errstr (empty or
 * duplicate name, negative index). */
int ds_stage_list_new(const ds_stage_def_t *defs, size_t n, ds_stage_list_t **out, char *errstr,
                      size_t errstr_size);
/* prospecting 0, qualification 1, discovery 2, demo 3, proposal 4,
 * negotiation 5, closed_won 6, closed_lost 6. Static; never destroy it. */
const ds_stage_list_t *ds_stage_list_default(void);
/* Does nothing with NULL or the default list. */
void ds_stage_list_destroy(ds_stage_list_t *stages);
/* The stage's index ("Closed Won" finds closed_won), or -1 when unknown. */
int ds_stage_list_index(const ds_stage_list_t *stages, const char *stage);
/* The highest index of the list, which the closed stages share: the open
 * stages are 0 .. this - 1 (6 for the default list; 0 for NULL). */
int ds_stage_list_max_index(const ds_stage_list_t *stages);
/* The normalized name of the first stage with that index ("proposal"), or
 * NULL when none has it. */
const char *ds_stage_list_name(const ds_stage_list_t *stages, int index);
/* The i-th stage of the list in its order: its normalized name, and its
 * index in *index; NULL past the end. */
const char *ds_stage_list_at(const ds_stage_list_t *stages, size_t i, int *index);

/* ---- prior win rates ------------------------------------------------------ */

typedef struct {
    const char *account_id; /* NULL or "" when none */
    const char *owner_id;   /* NULL or "" when none */
    int64_t closed_at_us;
    bool won;
    /* For the segment's win rate and the cohort's amount; NULL or "" (NaN)
     * when none. */
    const char *industry, *product_category, *size_band;
    double amount;
    /* The deal's activity, for the account's and owner's engagement; only
     * read when has_activity: its interactions, its emails the buyer
     * answered and those answered or not (ds_interaction_answer_parse), and
     * its creation (the working days it was open run to closed_at). */
    bool has_activity;
    int64_t created_at_us;
    uint32_t interactions, emails_answered, emails_asked;
} ds_closed_deal_t;

/* An org's closed deals, sorted for "rate before t" lookups in O(log n).
 * Immutable once built; may be shared by threads. */
typedef struct ds_winrate_ctx ds_winrate_ctx_t;

typedef struct {
    uint32_t wins, closed; /* deals closed strictly before the time asked */
    double rate;           /* smoothed, see the functions below */
} ds_winrate_t;

/* Builds the context from n closed deals (ids are copied; deals with
 * closed_at DS_TIME_NONE are ignored). smoothing is m in
 * (wins + m * org_rate) / (closed + m); pass DS_WINRATE_SMOOTHING. Returns 0
 * and sets *out (free with ds_winrate_ctx_destroy), or DS_EINVAL when
 * smoothing is negative or not finite. */
int ds_winrate_ctx_new(const ds_closed_deal_t *deals, size_t n, double smoothing, ds_winrate_ctx_t **out);
/* Does nothing with NULL. */
void ds_winrate_ctx_destroy(ds_winrate_ctx_t *wr);
/* The org's rate before t, Laplace-smoothed: (wins + 1) / (closed + 2). */
void ds_winrate_org(const ds_winrate_ctx_t *wr, int64_t before_us, ds_winrate_t *out);
/* The account's (owner's) smoothed rate before t; an id without closed deals
 * gets the org rate. Returns 0, or DS_EINVAL for a NULL or empty id. */
int ds_winrate_account(const ds_winrate_ctx_t *wr, const char *account_id, int64_t before_us,
                       ds_winrate_t *out);
int ds_winrate_owner(const ds_winrate_ctx_t *wr, const char *owner_id, int64_t before_us, ds_winrate_t *out);
/* The segment's (deals of that industry and product category) smoothed rate
 * before t, the org rate without closed deals. Returns 0, or DS_EINVAL when
 * either is NULL or empty. */
int ds_winrate_segment(const ds_winrate_ctx_t *wr, const char *industry, const char *product_category,
                       int64_t before_us, ds_winrate_t *out);
/* The mean ln(amount) of the cohort's (that size band and product category)
 * deals closed before t with an amount > 0, into *mean_log, and their number
 * into *n (0 and NaN when none). Returns 0, or DS_EINVAL when either is NULL
 * or empty. */
int ds_amount_cohort(const ds_winrate_ctx_t *wr, const char *size_band, const char *product_category,
                     int64_t before_us, double *mean_log, uint32_t *n);

/* Engagement smoothing: an account's or owner's activity rate is
 * (interactions + m_w * org rate) / (working days + m_w), its reply rate
 * (answered + m_e * org rate) / (asked + m_e). */
#define DS_ENGAGEMENT_WORKDAYS 20.0
#define DS_ENGAGEMENT_EMAILS 10.0

typedef struct {
    uint32_t deals;           /* closed strictly before the time asked, with activity */
    double workdays;          /* Monday to Friday (UTC) between their creation and close */
    uint32_t interactions;    /* theirs */
    uint32_t answered, asked; /* their emails */
    double activity_rate;     /* interactions per working day, smoothed toward the org */
    double reply_rate;        /* answered / asked, smoothed toward the org */
} ds_engagement_t;

/* The org's engagement before t: rates (interactions + 1) / (working days +
 * 1) and (answered + 1) / (asked + 2). */
void ds_engagement_org(const ds_winrate_ctx_t *wr, int64_t before_us, ds_engagement_t *out);
/* The account's (owner's) engagement before t, smoothed toward the org's;
 * an id without closed deals gets the org rates. Returns 0, or DS_EINVAL for
 * a NULL or empty id. */
int ds_engagement_account(const ds_winrate_ctx_t *wr, const char *account_id, int64_t before_us,
                          ds_engagement_t *out);
int ds_engagement_owner(const ds_winrate_ctx_t *wr, const char *owner_id, int64_t before_us,
                        ds_engagement_t *out);

/* ---- raw input -------------------------------------------------------------- */

typedef enum {
    DS_HIST_STAGE = 0,
    DS_HIST_AMOUNT,
    DS_HIST_CLOSE_DATE,
    DS_HIST_IGNORED, /* "outcome" and anything else: never read */
} ds_hist_field_t;

/* One field's value; only the member of the row's field is read. */
typedef struct {
    const char *stage;     /* NULL when none */
    double amount;         /* NaN when none */
    int64_t close_date_us; /* DS_TIME_NONE when none */
} ds_hist_value_t;

/* One opportunity_history row: a change of one field. */
typedef struct {
    ds_hist_field_t field;
    ds_hist_value_t old_value; /* none on the row that records the creation */
    ds_hist_value_t new_value;
    int64_t changed_at_us; /* rows with DS_TIME_NONE are ignored */
} ds_opp_history_t;

/* Fills row from the table's text columns: field "stage", "amount",
 * "close_date" (or "outcome", stored as DS_HIST_IGNORED); values as text
 * (NULL or "" = none; stage borrowed, amount parsed as a number, close_date
 * as ISO 8601 via ds_parse_time_us). Returns 0, or DS_EINVAL for an unknown
 * field or an unparsable value (row untouched). */
int ds_opp_history_set(ds_opp_history_t *row, const char *field, const char *old_value, const char *new_value,
                       int64_t changed_at_us);

typedef enum {
    DS_INTERACTION_EMAIL = 0,
    DS_INTERACTION_PHONE,
    DS_INTERACTION_MEETING,
    DS_INTERACTION_DEMO,
    DS_INTERACTION_SUPPORT,
    DS_INTERACTION_OTHER, /* counted in recency and velocity, not by type */
} ds_interaction_type_t;

/* "email", "phone", "meeting", "demo", "support" (case-insensitive);
 * anything else is DS_INTERACTION_OTHER. */
ds_interaction_type_t ds_interaction_type_parse(const char *type);

/* Whether the buyer answered: the interaction's outcome text, read by
 * ds_interaction_answer_parse. */
typedef enum {
    DS_ANSWER_NONE = 0, /* not a question to the buyer, or not known ("sent", "received") */
    DS_ANSWER_YES,      /* "replied", "answered", "connected", "held", "completed" */
    DS_ANSWER_NO,       /* "no_reply", "unanswered", "no_answer", "voicemail", "no_show", "bounced" */
} ds_interaction_answer_t;

/* Case-insensitive, ' ' and '-' read as '_'; NULL or anything else is
 * DS_ANSWER_NONE. */
ds_interaction_answer_t ds_interaction_answer_parse(const char *outcome);

typedef struct {
    ds_interaction_type_t type;
    int64_t occurred_at_us;
    double duration_min; /* NaN when unknown */
    const char
        *contact; /* the buyer contact it names (meta contact_email, contact_id or contact); NULL none */
    ds_interaction_answer_t answer;
} ds_interaction_t;

typedef struct {
    const char *id; /* put on MEDDICC evidence */
    int64_t occurred_at_us;
    const char *text; /* text_len bytes, no NUL needed */
    size_t text_len;
} ds_transcript_t;

typedef enum { DS_OUTCOME_OPEN = 0, DS_OUTCOME_WON, DS_OUTCOME_LOST } ds_outcome_t;

/* One opportunity's raw rows, as the loader fetched them. Arrays may come in
 * any order; ties in time keep the array order. Every string may be NULL. */
typedef struct {
    const char *opportunity_id, *external_id, *account_id, *owner_id;
    int64_t created_at_us;
    /* Current values from the opportunities row, used only for a field
     * without any history row (see the top of this file). */
    const char *stage;
    double amount;         /* NaN when unknown */
    int64_t close_date_us; /* DS_TIME_NONE when unknown */
    int64_t changed_at_us; /* when the CRM last changed the row; DS_TIME_NONE = unknown */
    const char *product_category, *persona;
    const char *industry, *region, *size_band; /* the account's */
    const ds_stage_list_t *stages;             /* the org's stage order; NULL = default */
    const ds_opp_history_t *history;
    size_t n_history;
    const ds_interaction_t *interactions;
    size_t n_interactions;
    const ds_transcript_t *transcripts;
    size_t n_transcripts;
    /* Never read by ds_features_compute: labels for the trainer, and what
     * the scorer's prior chain and the reasons' texts take beside the
     * features. */
    ds_outcome_t outcome;
    int64_t closed_at_us;
    double stage_probability; /* the CRM's, in [0, 1]; NaN when none */
    const char *currency;     /* ISO code as the CRM sent it; NULL when none */
} ds_opp_raw_t;

/* Initializes raw to "nothing known": NULL strings, empty arrays, NaN amount
 * and stage probability, DS_TIME_NONE times, outcome open. */
void ds_opp_raw_init(ds_opp_raw_t *raw);

/* ---- output ----------------------------------------------------------------- */

/* values[DS_F_*] with NaN for missing. meddicc's evidence borrows the
 * transcript ids of the raw input and the lexicon's phrases: serialize it
 * (ds_meddicc_result_to_json) while both are alive. Plain data, no cleanup. */
typedef struct {
    double values[DS_FEATURE_COUNT];
    ds_meddicc_result_t meddicc;
} ds_feature_vec_t;

/* Computes the features of raw as of as_of_us into *out. wr may be NULL (win
 * rates and closed-deal counts are NaN); lex may be NULL (the built-in
 * default lexicon). Returns 0, or DS_EINVAL when raw or out is NULL or an
 * array is NULL with a nonzero count (out is then cleared to NaN). */
int ds_features_compute(const ds_opp_raw_t *raw, int64_t as_of_us, const ds_winrate_ctx_t *wr,
                        const ds_meddicc_lexicon_t *lex, ds_feature_vec_t *out);

/* {"days_open":12.5,"days_to_close":null,...}: every feature in catalog
 * order, NaN as null, numbers in their shortest round-trip form (integers
 * without a fraction). Deterministic. Returns a string the caller frees
 * with free(); never NULL. */
char *ds_features_to_json(const ds_feature_vec_t *vec);
/* The same document from the DS_FEATURE_COUNT values alone. */
char *ds_features_values_to_json(const double *values);

#endif
