/* Commit tracking: a partition's committable offset never passes a segment
 * that still has an unsafe effect. */
#include "sp_offsets.h"
#include "sp_test.h"

static void in_order_release(void) {
    sp_offsets o;
    sp_offsets_init(&o);
    sp_tp *tp = sp_offsets_tp(&o, "t", 0);
    SP_CHECK(tp == sp_offsets_tp(&o, "t", 0));
    SP_CHECK(tp != sp_offsets_tp(&o, "t", 1));
    sp_seg *a = sp_offsets_seg_open(&o, tp, 0);
    a->end = 10;
    sp_seg *b = sp_offsets_seg_open(&o, tp, 0);
    b->end = 20;
    sp_seg_ref(a); /* an output of a is in flight */
    sp_seg_unref(a); /* the batch is done */
    sp_seg_unref(b);
    SP_CHECK_INT(sp_offsets_advance(&o), 0);
    SP_CHECK_INT(tp->committable, -1); /* b is safe, but a is not */
    sp_seg_unref(a); /* acknowledged */
    SP_CHECK_INT(sp_offsets_advance(&o), 1);
    SP_CHECK_INT(tp->committable, 20);
    SP_CHECK_INT(sp_offsets_pending(tp), 0);
    tp->committed = 20;
    SP_CHECK_INT(sp_offsets_advance(&o), 0);
    sp_offsets_destroy(&o);
}

static void partitions_are_independent(void) {
    sp_offsets o;
    sp_offsets_init(&o);
    sp_tp *p0 = sp_offsets_tp(&o, "t", 0), *p1 = sp_offsets_tp(&o, "t", 1);
    sp_seg *a = sp_offsets_seg_open(&o, p0, 0);
    sp_seg *b = sp_offsets_seg_open(&o, p1, 0);
    a->end = 5;
    b->end = 7;
    sp_seg_unref(b);
    SP_CHECK_INT(sp_offsets_advance(&o), 1);
    SP_CHECK_INT(p0->committable, -1);
    SP_CHECK_INT(p1->committable, 7);
    SP_CHECK_INT(o.open_segments, 1);
    sp_offsets_destroy(&o); /* frees a still-held segment */
}

static void held_segment_blocks_later_ones(void) {
    /* a failed batch keeps its hold: nothing after it is committable */
    sp_offsets o;
    sp_offsets_init(&o);
    sp_tp *tp = sp_offsets_tp(&o, "t", 3);
    for (int i = 0; i < 5; i++) {
        sp_seg *s = sp_offsets_seg_open(&o, tp, 0);
        s->end = (i + 1) * 100;
        if (i != 2) sp_seg_unref(s);
    }
    sp_offsets_advance(&o);
    SP_CHECK_INT(tp->committable, 200);
    SP_CHECK_INT(sp_offsets_pending(tp), 3);
    sp_offsets_destroy(&o);
}

/* With changelogged state an offset is committed only where the
 * changelogs were flushed, jointly for the partitions of one number. */
static void commits_land_on_flushes(void) {
    sp_offsets o;
    sp_offsets_init(&o);
    sp_tp *a = sp_offsets_tp(&o, "a", 0), *b = sp_offsets_tp(&o, "b", 0);
    sp_tp *c = sp_offsets_tp(&o, "a", 1);
    a->assigned = b->assigned = c->assigned = 1;
    a->position = 10, b->position = 4, c->position = 7;
    SP_CHECK_INT(sp_offsets_mark_flush(&o), 0);      /* flush 1 */
    a->position = 20, b->position = 9, c->position = 12;
    SP_CHECK_INT(sp_offsets_mark_flush(&o), 0);      /* flush 2 */
    a->position = 30;                                /* b and c moved no further */
    /* what is safe lies between the flushes */
    a->committable = 25, b->committable = 9, c->committable = 12;
    sp_offsets_settle_flushes(&o);
    SP_CHECK_INT(a->flushed, 20);
    SP_CHECK_INT(b->flushed, 9);
    SP_CHECK_INT(c->flushed, 12);
    /* b of flush 2 not safe: a and b both stay at flush 1, c goes on */
    b->committable = 8;
    sp_offsets_settle_flushes(&o);
    SP_CHECK_INT(a->flushed, 10);
    SP_CHECK_INT(b->flushed, 4);
    SP_CHECK_INT(c->flushed, 12);
    /* nothing safe yet */
    a->committable = b->committable = -1;
    sp_offsets_settle_flushes(&o);
    SP_CHECK_INT(a->flushed, -1);
    SP_CHECK_INT(b->flushed, -1);
    /* a committed at flush 2: what is before it goes, flush 2 stays */
    SP_CHECK_INT(sp_offsets_mark_flush(&o), 0);      /* flush 3: a at 30 */
    a->committed = 20;
    sp_offsets_forget_flushes(a, 0);
    SP_CHECK_INT(a->nflushes, 2);
    SP_CHECK_INT(a->flushes[0].pos, 20);
    a->committable = 30, b->committable = 9;
    sp_offsets_settle_flushes(&o);
    SP_CHECK_INT(a->flushed, 30);
    SP_CHECK_INT(b->flushed, 9);
    sp_offsets_forget_flushes(b, 1);
    SP_CHECK_INT(b->nflushes, 0);
    sp_offsets_destroy(&o);
}

int main(void) {
    commits_land_on_flushes();
    in_order_release();
    partitions_are_independent();
    held_segment_blocks_later_ones();
    return sp_test_summary();
}
