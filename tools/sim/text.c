/* Transcript sentences; see text.h. Templates take slots: {P} a person,
 * {E} an executive title, {C} a competitor, {S} a system, {N} a number,
 * {Q} a quarter, {D} a day of month, {Y} a city. */
#include "text.h"

#include <string.h>

const char *const sim_element_names[SIM_EL_COUNT] = {
    "metrics",       "economic_buyer", "decision_criteria", "decision_process",
    "paper_process", "identify_pain",  "champion",          "competition",
};

#define NPOS 6
#define NNEG 4

static const char *const pos_cues[SIM_EL_COUNT][NPOS] = {
    {"We need to cut onboarding time by {N}% this year.",
     "If this saves us {N} hours a week, the ROI is obvious.",
     "Our main KPI is reducing churn by {N}% over the next year.",
     "The business case has to show payback within {N} months.",
     "Leadership wants a {N}% improvement in forecast accuracy; those are the success metrics.",
     "Our KPIs for this: {N}% more pipeline coverage by Q{Q}."},
    {"{P}, our {E}, owns the budget for this.", "The final sign-off is with our {E}.",
     "{P} controls the budget and has approved the spend in principle.",
     "Our {E} is the economic buyer, and joined the last call.",
     "Budget is approved: {N}0k is set aside for this in Q{Q}.",
     "The {E} signs anything above {N}0k, and {P} already said yes to the budget."},
    {"Our evaluation criteria are security, ease of use and the {S} integration.",
     "Integration with {S} is top of our requirements, a deal breaker if it's missing.",
     "We score vendors against a requirements checklist of {N} items.",
     "SSO, audit logs, and data residency are must-haves for us.",
     "The decision criteria weigh total cost of ownership the most.",
     "Our selection criteria put the {S} connector first, then reporting."},
    {"The next steps are a technical review, then the steering committee on the {D}th.",
     "Our approval process goes through IT, then finance, then the {E}.",
     "We decide as a committee, and {P} runs the decision process.",
     "After the pilot we present to the steering committee for approval.",
     "The decision will be made by the end of Q{Q}; {P} owns the timeline.",
     "The buying committee meets on the {D}th to decide."},
    {"Legal will need to review the MSA before we sign.",
     "Procurement needs a security questionnaire and vendor onboarding forms.",
     "Send over the order form and we'll route it through procurement.",
     "Our legal team already has your redlines on the contract.",
     "Contracts above {N}0k need a second signature from finance, procurement knows the drill.",
     "The paperwork goes to procurement first, then legal for the DPA."},
    {"Our biggest challenge is that reps spend {N} hours a week on manual reporting.",
     "We're struggling with deals slipping every quarter.",
     "The pain point is that nobody trusts the forecast.",
     "The problem is we lost {N} renewals last quarter because we saw the risk too late.",
     "Honestly, the current process is broken, and everyone knows it.",
     "The real problem is that our data lives in {N} different spreadsheets."},
    {"{P} is our champion here and is pushing for this internally.",
     "I'll champion this with the leadership team.",
     "{P} is in our corner and has been selling internally for months.",
     "You have a strong internal advocate in {P}.", "{P} set up the meeting with the {E} on our behalf.",
     "{P} is our internal sponsor and will present it to the {E}."},
    {"We're also looking at other vendors, {C} mainly.",
     "Your competitor {C} came in about {N}% cheaper, to be honest.", "We had a demo from {C} last week.",
     "Our incumbent is {C}, and their subscription renews in {N} months.",
     "Compared to the competition, {C} mostly, your reporting looks stronger.",
     "Our shortlist is you and {C}, it's between the two of you."},
};

static const char *const neg_cues[SIM_EL_COUNT][NNEG] = {
    {"We haven't put numbers on the impact yet.", "Honestly, we don't have any success metrics defined.",
     "There's no business case yet.", "We haven't quantified what this would save us."},
    {"We don't know who signs off on this yet.", "There's no budget yet.",
     "No budget has been allocated for this.", "We haven't met the economic buyer."},
    {"We haven't defined our evaluation criteria yet.", "There's no requirements list at this point.",
     "We're not sure what matters most in the decision.", "No formal criteria yet, we're just looking."},
    {"We don't know what the approval process looks like yet.", "There's no timeline for a decision.",
     "Nobody has mapped out the decision process.", "I'm not sure who else needs to approve this."},
    {"We haven't talked to procurement yet.", "Legal hasn't been involved at all.",
     "No idea what the contract process is on their side.", "We haven't started any paperwork."},
    {"There's no real pain right now, things work okay.", "We're not sure this is a priority problem.",
     "Nothing is really broken today.", "It's not urgent, more of a wish-list item."},
    {"We haven't identified a champion yet.", "Nobody internally is driving this.",
     "There's no internal sponsor for this.", "We don't have anyone pushing for it on their side."},
    {"We don't know who else they're talking to.", "They haven't said whether other vendors are involved.",
     "Not sure if they're looking at anyone else.", "No idea about competitors at this point."},
};

static const char *const noise[] = {
    "Thanks everyone for joining today.",
    "Can you hear me okay? I think there's a bit of an echo.",
    "Let me share my screen.",
    "Sorry, I'm a few minutes late, my last call ran over.",
    "How was the conference in {Y}?",
    "I'll send a recap email after this call.",
    "Let's find time next week, does Tuesday work?",
    "Could you go back to the previous slide?",
    "We're moving offices next month, so things are a bit hectic.",
    "The weather in {Y} has been terrible, right?",
    "I'll loop in {P} from my team.",
    "Quick question on the roadmap: is the mobile app coming this year?",
    "Great, that makes sense.",
    "Can we take five minutes on the dashboard view?",
    "I have a hard stop at the top of the hour.",
    "Let me check with {P} and get back to you.",
    /* Decoys: cue words out of context. */
    "The budget for the team offsite is already spent, ha.",
    "My kid's team won the championship on Saturday.",
    "No competition for the best coffee in the building, honestly.",
    "Our legal department moved to the fifth floor.",
    "{P} said \"let's keep it simple\" and left the meeting.",
    "Pricing, timing, and scope: we'll go through all of it later.",
    "The process for booking meeting rooms here is a mess.",
    "We ran a pilot of something similar years ago, long before my time.",
    /* Discovery questions: cue words in a question are not evidence. */
    "Who else is involved in the decision process?",
    "What does the budget look like on your side?",
    "Are you looking at any competitors?",
};

static const char *const people[] = {
    "Maria", "James", "Priya",  "Chen", "Fatima", "Lukas", "Sofia", "Ahmed", "Emma",
    "Diego", "Aiko",  "Olivia", "Noah", "Ingrid", "Kwame", "Elena", "Tom",   "Hannah",
};
static const char *const execs[] = {
    "CFO", "COO", "CIO", "CRO", "VP of Sales", "Head of RevOps", "CEO",
};
static const char *const competitors[] = {
    "Clarivo", "Forecastly", "PipeSense", "DealMetric", "Quotanaut", "an in-house tool",
};
static const char *const systems[] = {
    "Salesforce", "HubSpot", "SAP", "Snowflake", "Dynamics", "Slack",
};
static const char *const cities[] = {
    "Berlin", "Austin", "Singapore", "Sao Paulo", "London", "Toronto", "Sydney",
};

#define PICK(rng, arr) (arr)[rng_below((rng), (uint32_t)ARRAY_LEN(arr))]
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void expand(rng_t *rng, ds_sb_t *out, const char *t) {
    for (const char *p = t; *p;) {
        /* Text up to the next brace goes out in one piece. */
        size_t n = strcspn(p, "{");
        if (n) {
            ds_sb_put(out, p, n);
            p += n;
            continue;
        }
        if (!p[1] || p[2] != '}') {
            ds_sb_putc(out, *p++);
            continue;
        }
        switch (p[1]) {
        case 'P': ds_sb_puts(out, PICK(rng, people)); break;
        case 'E': ds_sb_puts(out, PICK(rng, execs)); break;
        case 'C': ds_sb_puts(out, PICK(rng, competitors)); break;
        case 'S': ds_sb_puts(out, PICK(rng, systems)); break;
        case 'Y': ds_sb_puts(out, PICK(rng, cities)); break;
        case 'N': ds_sb_i64(out, rng_range(rng, 2, 40)); break;
        case 'Q': ds_sb_i64(out, rng_range(rng, 1, 4)); break;
        case 'D': ds_sb_i64(out, rng_range(rng, 4, 28)); break;
        default: ds_sb_put(out, p, 3); break;
        }
        p += 3;
    }
}

/* A sentence to place: buyer says the cues, either side says noise. */
typedef struct {
    const char *tmpl;
    int buyer;
} sentence_t;

void sim_committee(const char *opp_id, const char *out[SIM_COMMITTEE]) {
    /* FNV-1a of the id; a stride coprime with the 18 names keeps them distinct. */
    static const uint32_t strides[] = {1, 5, 7, 11, 13, 17};
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = opp_id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    uint32_t n = (uint32_t)ARRAY_LEN(people), start = (uint32_t)(h % n);
    uint32_t stride = strides[(h >> 32) % ARRAY_LEN(strides)];
    for (uint32_t j = 0; j < SIM_COMMITTEE; j++) out[j] = people[(start + j * stride) % n];
}

int sim_engaged(unsigned covered, double q) {
    static const int roles[] = {SIM_EL_ECONOMIC_BUYER, SIM_EL_CHAMPION, SIM_EL_DECISION_PROCESS,
                                SIM_EL_PAPER_PROCESS};
    int n = q > 0 ? 2 : 1;
    for (size_t i = 0; i < ARRAY_LEN(roles); i++) n += (covered >> roles[i]) & 1u;
    return n < SIM_COMMITTEE ? n : SIM_COMMITTEE;
}

unsigned sim_transcript_text(rng_t *rng, ds_sb_t *out, unsigned covered, double p_pos, double p_neg,
                             const char *const committee[SIM_COMMITTEE], double q) {
    sentence_t s[32];
    int n = 0;
    unsigned mentioned = 0;
    for (int e = 0; e < SIM_EL_COUNT; e++) {
        if (covered & (1u << e)) {
            if (rng_bernoulli(rng, p_pos)) {
                s[n++] = (sentence_t){pos_cues[e][rng_below(rng, NPOS)], 1};
                mentioned |= 1u << e;
            }
        } else if (rng_bernoulli(rng, p_neg)) {
            s[n++] = (sentence_t){neg_cues[e][rng_below(rng, NNEG)], 1};
        }
    }
    /* Noise sentences, without repeats. */
    int nnoise = rng_range(rng, 2, 6);
    uint32_t used = 0;
    for (int i = 0; i < nnoise; i++) {
        uint32_t j;
        do j = rng_below(rng, (uint32_t)ARRAY_LEN(noise));
        while (used & (1u << j));
        used |= 1u << j;
        s[n++] = (sentence_t){noise[j], (int)rng_below(rng, 2)};
    }
    /* Shuffle (Fisher-Yates) so cues are not always in the same place. */
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(rng, (uint32_t)i + 1);
        sentence_t t = s[i];
        s[i] = s[j];
        s[j] = t;
    }
    /* One draw, as a pick among all names took: the rest of the stream is
     * the same whatever the committee. */
    const char *buyer = committee[rng_below(rng, (uint32_t)sim_engaged(covered, q))];
    int last = -1;
    for (int i = 0; i < n; i++) {
        /* Consecutive sentences of one speaker share a line. */
        if (s[i].buyer == last) {
            ds_sb_putc(out, ' ');
        } else {
            if (i) ds_sb_putc(out, '\n');
            ds_sb_puts(out, s[i].buyer ? buyer : "Rep");
            ds_sb_put(out, ": ", 2);
            last = s[i].buyer;
        }
        expand(rng, out, s[i].tmpl);
    }
    return mentioned;
}
