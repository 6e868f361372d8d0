/* sp_offsets: at-least-once commit tracking.
 *
 * Records of one partition in one batch form a segment. Every effect of
 * those records that is not yet safe (an output not yet acknowledged by
 * Kafka, a file not yet published, the batch itself still running) holds a
 * reference on the segment. A partition's offset may be committed up to the
 * end of the longest run of released segments from its head, so a commit
 * never passes the first record with an unsafe effect. Counting per
 * segment rather than per record keeps the hot path to one increment. */
#ifndef SP_OFFSETS_H
#define SP_OFFSETS_H

#include <stdint.h>

typedef struct sp_seg sp_seg;
typedef struct sp_tp sp_tp;

/* A partition's position when the state stores' changes were flushed to
 * their changelogs (seq counts the flushes). */
typedef struct sp_flush {
    int64_t seq, pos;
} sp_flush;

/* An input record's place, for what its outputs must say about it when
 * Kafka refuses one (a dead letter names the record, and holds it): the
 * producer's per-message opaque points at one. A segment has one per
 * record, and one (offset -1) for outputs of no record of its own. */
typedef struct sp_slot {
    sp_seg *seg;
    int64_t offset; /* -1: the segment's, of no one record */
    int16_t failed;  /* an output of it failed for good already */
    int16_t counted; /* it counts as out (sp_stats.records_out) */
} sp_slot;

struct sp_seg {
    sp_seg *next;
    sp_tp *tp;
    int64_t end;     /* offset after the last record of the segment */
    int32_t pending; /* references still held */
    int32_t nslots, cap;
    sp_slot self;
    sp_slot slots[]; /* cap of them */
};

struct sp_tp {
    sp_tp *next;
    char *topic;
    int32_t partition;
    int32_t assigned;
    sp_seg *head, *tail;
    int64_t committable; /* -1: nothing processed yet */
    int64_t committed;   /* last offset handed to a commit; -1 none */
    int64_t end_offset;  /* bounded runs: stop here; -1 unbounded */
    int32_t done;        /* bounded runs: reached end_offset */
    int64_t position;    /* after the last record processed; -1 none
                          * (exactly-once commits this in a transaction) */
    sp_seg *batch_seg;   /* segment of the batch being built, if any */
    int64_t resume_ms;   /* stream time committed with the offset, until the
                          * partition's state is here; -1 none */
    int64_t group_offset; /* the group's committed offset when assigned; -1 */
    /* a repartition topic's: offset whose commit Kafka confirmed, and how
     * far its records were deleted (sp_run_purge); -1 none */
    int64_t purge_to, purged;
    /* Partitions of topics joined by key are processed in timestamp order
     * (run/sp_run_sync.c): their consumed records wait here, in offset
     * order, until they are the earliest of their partition number. */
    void **held;         /* consumed messages, a ring */
    int32_t nheld, held_head, held_cap;
    int32_t held_paused; /* paused because it holds many (sp_run_sync.c) */
    int32_t sync_group;  /* index of its group of joined topics; -1 none,
                          * -2 not looked up yet */
    int at_end;          /* the consumer said it reached the end since the
                          * last record */
    int64_t at_end_ms;   /* wall clock then */
    int64_t eof_offset;  /* where the consumer last said it reached the end
                          * since assigned (past a transaction's marker,
                          * where no record is); -1 */
    sp_flush *flushes;   /* positions at flushes since the one committed */
    int32_t nflushes, flushes_cap;
    int64_t flushed;     /* sp_offsets_settle_flushes' answer */
};

typedef struct sp_offsets {
    sp_tp *tps;
    int64_t open_segments;
    int64_t flush_seq;
} sp_offsets;

void sp_offsets_init(sp_offsets *o);
void sp_offsets_destroy(sp_offsets *o);
sp_tp *sp_offsets_tp(sp_offsets *o, const char *topic, int32_t partition);
/* A new segment at the tail of tp, holding one reference (the batch's),
 * with room for the slots of cap records. */
sp_seg *sp_offsets_seg_open(sp_offsets *o, sp_tp *tp, int32_t cap);
/* The slot of the segment's next record (NULL when it has no room). */
sp_slot *sp_seg_slot(sp_seg *s, int64_t offset);
void sp_seg_ref(sp_seg *s);
void sp_seg_unref(sp_seg *s);
/* Pops released segments; returns how many partitions have an offset to
 * commit (committable > committed). */
int sp_offsets_advance(sp_offsets *o);
/* Segments still waiting on tp (0 when everything is safe). */
int64_t sp_offsets_pending(const sp_tp *tp);

/* At-least-once with changelogged state. A restore keeps only changelog
 * records whose inputs are committed (each carries the positions of its
 * partition's inputs), so that restored state is the committed input's,
 * never a replayed record's twice. Then an offset may be committed only
 * where the changelogs were flushed, and jointly for the partitions of one
 * number, whose records change the same store partitions: mark_flush
 * records the positions at a flush of every store; settle_flushes sets
 * each assigned partition's flushed: its offset at the latest flush whose
 * effects are all safe on every partition of its number (-1: none);
 * forget drops what is behind tp's committed offset. */
int sp_offsets_mark_flush(sp_offsets *o);
void sp_offsets_settle_flushes(sp_offsets *o);
void sp_offsets_forget_flushes(sp_tp *tp, int all);

#endif
