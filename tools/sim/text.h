/* Call-transcript text for the simulator: varied sentences that carry
 * MEDDICC cues for the elements a deal has covered, negated cues for some it
 * has not, and noise (small talk and decoys that use cue words out of
 * context). */
#ifndef SIM_TEXT_H
#define SIM_TEXT_H

#include "buf.h"
#include "rng.h"

/* MEDDICC elements in the order of DESIGN.md. */
enum {
    SIM_EL_METRICS,
    SIM_EL_ECONOMIC_BUYER,
    SIM_EL_DECISION_CRITERIA,
    SIM_EL_DECISION_PROCESS,
    SIM_EL_PAPER_PROCESS,
    SIM_EL_IDENTIFY_PAIN,
    SIM_EL_CHAMPION,
    SIM_EL_COMPETITION,
    SIM_EL_COUNT
};

extern const char *const sim_element_names[SIM_EL_COUNT];

/* A deal's buying committee: SIM_COMMITTEE distinct first names, the same
 * for the same opportunity id (a hash of it; no random draw). */
#define SIM_COMMITTEE 5
void sim_committee(const char *opp_id, const char *out[SIM_COMMITTEE]);

/* How many of the committee take part in calls: one contact, a second
 * from the start when the deal's quality q is above 0 (a keen buyer brings
 * a colleague), and one more for each of the economic buyer, the champion,
 * the decision process and the paper process the deal has covered (the
 * people who own them join), at most SIM_COMMITTEE. */
int sim_engaged(unsigned covered, double q);

/* Appends one transcript to out: speaker-labelled lines separated by "\n",
 * the buyer one of committee[0 .. sim_engaged(covered, q)).
 * covered is a bit mask of discovered elements (bit i = element i).
 * p_pos is the chance a covered element is mentioned, p_neg the chance an
 * uncovered one gets a negated mention. Returns the mask of elements given a
 * positive mention. */
unsigned sim_transcript_text(rng_t *rng, ds_sb_t *out, unsigned covered, double p_pos, double p_neg,
                             const char *const committee[SIM_COMMITTEE], double q);

#endif
