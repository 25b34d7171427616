/* The outbox relay's read position (services/ingest/relay_cursor.h): the
 * floor moves over ids read without a gap, waits at a gap, passes over one
 * that stays open and then has the relay read below it from time to time,
 * until every transaction running when it passed over the gap has ended. */
#include <criterion/criterion.h>

#include "ingest/relay_cursor.h"

#define S 1000000 /* a second, in µs */

static const bool all[] = {true, true, true, true};

Test(relay_cursor, moves_over_ids_read_without_a_gap) {
    relay_cursor_t cur = {.floor = 10};
    relay_cursor_advance(&cur, (const long long[]){11, 12, 13}, all, 3, 5 * S, 100);
    cr_expect_eq(cur.floor, 13);
    cr_expect_eq(cur.gap_since_us, 0);
    cr_expect(!relay_cursor_rescan_due(&cur, 100 * S), "no gap passed over, nothing to rescan");
}

Test(relay_cursor, stops_at_a_row_not_published) {
    relay_cursor_t cur = {.floor = 10};
    relay_cursor_advance(&cur, (const long long[]){11, 12, 13}, (const bool[]){true, false, true}, 3, 5 * S,
                         100);
    cr_expect_eq(cur.floor, 11, "row 12 is read again");
    cr_expect_eq(cur.gap_since_us, 0);
}

Test(relay_cursor, waits_at_a_gap_that_closes) {
    relay_cursor_t cur = {.floor = 10};
    /* Row 11's transaction has not committed yet. */
    relay_cursor_advance(&cur, (const long long[]){12, 13}, all, 2, 5 * S, 100);
    cr_expect_eq(cur.floor, 10);
    relay_cursor_advance(&cur, (const long long[]){14}, all, 1, 5 * S + RELAY_CURSOR_GAP_US / 2, 100);
    cr_expect_eq(cur.floor, 10, "the gap is younger than RELAY_CURSOR_GAP_US");
    /* It commits: rows 12 to 14 were published and removed meanwhile. */
    relay_cursor_advance(&cur, (const long long[]){11, 15}, all, 2, 5 * S + RELAY_CURSOR_GAP_US * 2, 100);
    cr_expect_eq(cur.floor, 11);
    cr_expect(!cur.passed_gap);
}

Test(relay_cursor, passes_over_a_gap_that_stays_open_and_rescans_below) {
    relay_cursor_t cur = {.floor = 10};
    relay_cursor_advance(&cur, (const long long[]){12, 13}, all, 2, 5 * S, 100);
    relay_cursor_advance(&cur, (const long long[]){14, 15, 16}, (const bool[]){true, true, false}, 3,
                         5 * S + RELAY_CURSOR_GAP_US, 100);
    cr_expect_eq(cur.floor, 15, "over the gap, up to the row not published");
    cr_expect(cur.passed_gap);
    cr_expect(relay_cursor_rescan_due(&cur, 7 * S), "row 11 may still commit");
    cr_expect(!relay_cursor_rescan_due(&cur, 7 * S + RELAY_CURSOR_RESCAN_US / 2));
    cr_expect(relay_cursor_rescan_due(&cur, 7 * S + RELAY_CURSOR_RESCAN_US));
}

/* Passed over at a read whose snapshot had xmax 100: a transaction with an
 * xid below 100 may still commit below the floor. The reads below end
 * after one that began once none of them was running (xmin at or past
 * 100) and published everything it read. */
Test(relay_cursor, rescans_end_once_the_transactions_running_at_the_gap_ended) {
    relay_cursor_t cur = {.floor = 10};
    relay_cursor_advance(&cur, (const long long[]){12, 13}, all, 2, 5 * S, 90);
    relay_cursor_advance(&cur, (const long long[]){14}, all, 1, 5 * S + RELAY_CURSOR_GAP_US, 100);
    cr_assert(cur.passed_gap);
    cr_expect(relay_cursor_rescan_due(&cur, 7 * S));
    relay_cursor_rescanned(&cur, 99, true);
    cr_expect(relay_cursor_rescan_due(&cur, 8 * S), "xid 99 may still be running");
    relay_cursor_rescanned(&cur, 100, false);
    cr_expect(relay_cursor_rescan_due(&cur, 9 * S), "rows below the floor are left to publish");
    relay_cursor_rescanned(&cur, 100, true);
    cr_expect(!relay_cursor_rescan_due(&cur, 10 * S), "nothing can commit below the floor any more");
    cr_expect(!cur.passed_gap);
}

/* A gap passed over while the reads below go on raises the xid they wait
 * for; one passed over later starts them again. */
Test(relay_cursor, a_later_gap_waits_for_the_transactions_running_then) {
    relay_cursor_t cur = {.floor = 10};
    relay_cursor_advance(&cur, (const long long[]){12}, all, 1, 5 * S, 100);
    relay_cursor_advance(&cur, (const long long[]){13}, all, 1, 5 * S + RELAY_CURSOR_GAP_US, 100);
    relay_cursor_advance(&cur, (const long long[]){15}, all, 1, 7 * S, 120);
    relay_cursor_advance(&cur, (const long long[]){16}, all, 1, 7 * S + RELAY_CURSOR_GAP_US, 130);
    cr_assert_eq(cur.floor, 16);
    relay_cursor_rescanned(&cur, 110, true);
    cr_expect(cur.passed_gap, "xid 129 may still be running");
    relay_cursor_rescanned(&cur, 130, true);
    cr_expect(!cur.passed_gap);
    relay_cursor_advance(&cur, (const long long[]){18}, all, 1, 9 * S, 140);
    relay_cursor_advance(&cur, (const long long[]){19}, all, 1, 9 * S + RELAY_CURSOR_GAP_US, 150);
    cr_expect(relay_cursor_rescan_due(&cur, 11 * S), "row 17 may still commit");
    cr_expect_eq(cur.gap_xmax, 150);
}
