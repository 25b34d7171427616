/* The outbox relay's read position; see relay_cursor.h. */
#include "relay_cursor.h"

bool relay_cursor_rescan_due(relay_cursor_t *cur, int64_t now_us) {
    if (!cur->passed_gap || now_us - cur->rescan_us < RELAY_CURSOR_RESCAN_US) return false;
    cur->rescan_us = now_us;
    return true;
}

void relay_cursor_rescanned(relay_cursor_t *cur, long long xmin, bool drained) {
    if (drained && xmin >= cur->gap_xmax) cur->passed_gap = false;
}

void relay_cursor_advance(relay_cursor_t *cur, const long long *ids, const bool *published, int n,
                          int64_t now_us, long long snapshot_xmax) {
    /* Over the ids that follow the floor without a gap, published. */
    int i = 0;
    while (i < n && published[i] && ids[i] == cur->floor + 1) cur->floor = ids[i++];
    bool moved = i > 0;
    /* Stopped at a row not published: it is read again next time. */
    if (i == n || !published[i]) {
        cur->gap_since_us = 0;
        return;
    }
    if (moved || cur->gap_since_us == 0) {
        cur->gap_since_us = now_us;
        return;
    }
    if (now_us - cur->gap_since_us < RELAY_CURSOR_GAP_US) return;
    /* The gap stayed open: pass over it, up to the first row not published. */
    while (i < n && published[i]) cur->floor = ids[i++];
    cur->passed_gap = true;
    if (snapshot_xmax > cur->gap_xmax) cur->gap_xmax = snapshot_xmax;
    cur->gap_since_us = 0;
}
