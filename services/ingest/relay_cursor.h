/* Where the outbox relay reads from. The relay deletes what Kafka took, so
 * the rows it published stay behind as dead versions until a vacuum; a
 * read from the start of the outbox walks all of them (at 1,500 changes/s
 * about 460 pages a read after 20 s). The cursor keeps a floor below which
 * every row was published, and each read starts above it.
 *
 * Ids are taken when a row is inserted, not when it commits: a writer
 * that commits later than another (another ingest replica, an import)
 * leaves a gap in the ids read, and its rows appear there afterwards. So
 * the floor moves only over ids read without a gap; a gap still open after
 * RELAY_CURSOR_GAP_US (the transaction rolled back, or is slow) is passed
 * over, and from then on the relay also reads below the floor every
 * RELAY_CURSOR_RESCAN_US, so a row that commits there is published late
 * but never lost.
 *
 * Those reads below the floor end once no row can appear there any more.
 * A row below the floor has an id taken before that of the row the floor
 * stands on (ids come from one sequence, in order), which the read that
 * passed the gap saw committed: so before that read's snapshot. The
 * outbox's id default takes the transaction's xid before the id
 * (dealscore_internal.outbox_next_id()), so the writer of a row not seen
 * had its xid then and was still running: its xid is below that
 * snapshot's xmax, which the cursor keeps (gap_xmax; passing another gap
 * raises it, a later snapshot's xmax being no smaller). Once the oldest
 * transaction still running (a snapshot's xmin) is at or past gap_xmax,
 * every such writer has ended; a read below the floor that starts after
 * that sees all the rows they committed, and once it published every one
 * of them nothing more can appear below the floor: the reads stop until
 * the next gap is passed over. At start the floor is 0 and the first read
 * passes over the ids below the first row like any gap, which ends the
 * same way, within about a second. */
#ifndef DS_INGEST_RELAY_CURSOR_H
#define DS_INGEST_RELAY_CURSOR_H

#include <stdbool.h>
#include <stdint.h>

#define RELAY_CURSOR_GAP_US 1000000
#define RELAY_CURSOR_RESCAN_US 1000000

typedef struct {
    long long floor;      /* every row with an id up to here was published, but for gaps passed over */
    int64_t gap_since_us; /* when the floor last stopped at a gap; 0: no gap */
    int64_t rescan_us;    /* when the relay last read below the floor */
    bool passed_gap;      /* a gap was passed over: rows may still commit below the floor */
    long long gap_xmax;   /* the xmax of the snapshot of the last read that passed over a gap */
} relay_cursor_t;

/* Whether the relay should read below the floor now; if so, notes it as
 * done at now_us. */
bool relay_cursor_rescan_due(relay_cursor_t *cur, int64_t now_us);

/* After a read below the floor: xmin is the snapshot xmin of a statement
 * run before it, drained whether it read fewer rows than it could and
 * published them all. Ends the reads below the floor when no row can
 * appear there any more. */
void relay_cursor_rescanned(relay_cursor_t *cur, long long xmin, bool drained);

/* Moves the floor after a read above it: ids are the n rows it returned,
 * in id order, published[i] whether row i was published and removed,
 * snapshot_xmax the xmax of the read's snapshot. */
void relay_cursor_advance(relay_cursor_t *cur, const long long *ids, const bool *published, int n,
                          int64_t now_us, long long snapshot_xmax);

#endif
