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
 * but never lost. */
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
} relay_cursor_t;

/* Whether the relay should read below the floor now; if so, notes it as
 * done at now_us. */
bool relay_cursor_rescan_due(relay_cursor_t *cur, int64_t now_us);

/* Moves the floor after a read above it: ids are the n rows it returned,
 * in id order, published[i] whether row i was published and removed. */
void relay_cursor_advance(relay_cursor_t *cur, const long long *ids, const bool *published, int n,
                          int64_t now_us);

#endif
