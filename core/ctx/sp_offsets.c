#include "sp_offsets.h"

#include <stdlib.h>
#include <string.h>

void sp_offsets_init(sp_offsets *o) {
    o->tps = NULL;
    o->open_segments = 0;
    o->flush_seq = 0;
}

void sp_offsets_destroy(sp_offsets *o) {
    sp_tp *tp = o->tps;
    while (tp) {
        sp_tp *next = tp->next;
        sp_seg *s = tp->head;
        while (s) {
            sp_seg *sn = s->next;
            free(s);
            s = sn;
        }
        free(tp->topic);
        free(tp->flushes);
        free(tp->held); /* the runner destroyed what it held */
        free(tp);
        tp = next;
    }
    sp_offsets_init(o);
}

sp_tp *sp_offsets_tp(sp_offsets *o, const char *topic, int32_t partition) {
    for (sp_tp *tp = o->tps; tp; tp = tp->next)
        if (tp->partition == partition && strcmp(tp->topic, topic) == 0)
            return tp;
    sp_tp *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->topic = strdup(topic);
    if (!tp->topic) {
        free(tp);
        return NULL;
    }
    tp->partition = partition;
    tp->committable = -1;
    tp->committed = -1;
    tp->end_offset = -1;
    tp->position = -1;
    tp->resume_ms = -1;
    tp->group_offset = -1;
    tp->purge_to = tp->purged = -1;
    tp->sync_group = -2;
    tp->eof_offset = -1;
    tp->next = o->tps;
    o->tps = tp;
    return tp;
}

sp_seg *sp_offsets_seg_open(sp_offsets *o, sp_tp *tp, int32_t cap) {
    sp_seg *s = calloc(1, sizeof *s + (size_t)(cap > 0 ? cap : 0) * sizeof(sp_slot));
    if (!s) return NULL;
    s->tp = tp;
    s->cap = cap > 0 ? cap : 0;
    s->self = (sp_slot){s, -1, 0, 0};
    s->pending = 1;
    s->end = -1;
    if (tp->tail)
        tp->tail->next = s;
    else
        tp->head = s;
    tp->tail = s;
    o->open_segments++;
    return s;
}

sp_slot *sp_seg_slot(sp_seg *s, int64_t offset) {
    if (s->nslots == s->cap) return NULL;
    s->slots[s->nslots] = (sp_slot){s, offset, 0, 0};
    return &s->slots[s->nslots++];
}

void sp_seg_ref(sp_seg *s) { s->pending++; }
void sp_seg_unref(sp_seg *s) { s->pending--; }

int sp_offsets_advance(sp_offsets *o) {
    int ready = 0;
    for (sp_tp *tp = o->tps; tp; tp = tp->next) {
        while (tp->head && tp->head->pending == 0) {
            sp_seg *s = tp->head;
            if (s->end >= 0) tp->committable = s->end;
            tp->head = s->next;
            if (!tp->head) tp->tail = NULL;
            free(s);
            o->open_segments--;
        }
        if (tp->committable > tp->committed) ready++;
    }
    return ready;
}

int64_t sp_offsets_pending(const sp_tp *tp) {
    int64_t n = 0;
    for (const sp_seg *s = tp->head; s; s = s->next) n++;
    return n;
}

int sp_offsets_mark_flush(sp_offsets *o) {
    o->flush_seq++;
    for (sp_tp *tp = o->tps; tp; tp = tp->next) {
        if (!tp->assigned || tp->position < 0) continue;
        if (tp->nflushes && tp->flushes[tp->nflushes - 1].pos == tp->position) continue;
        if (tp->nflushes == tp->flushes_cap) {
            int32_t cap = tp->flushes_cap ? tp->flushes_cap * 2 : 8;
            sp_flush *f = realloc(tp->flushes, (size_t)cap * sizeof *f);
            if (!f) return -1;
            tp->flushes = f;
            tp->flushes_cap = cap;
        }
        tp->flushes[tp->nflushes++] = (sp_flush){o->flush_seq, tp->position};
    }
    return 0;
}

/* tp's position at flush seq (its last one then); -1: none yet */
static int64_t position_at(const sp_tp *tp, int64_t seq) {
    int64_t pos = -1;
    for (int32_t i = 0; i < tp->nflushes && tp->flushes[i].seq <= seq; i++)
        pos = tp->flushes[i].pos;
    return pos;
}

/* Whether flush seq's effects are safe on the partitions of tp's number
 * (which the list holds from tp on: earlier ones settled tp already). */
static int safe_at(const sp_tp *tp, int64_t seq) {
    for (const sp_tp *t = tp; t; t = t->next) {
        if (!t->assigned || t->partition != tp->partition) continue;
        int64_t pos = position_at(t, seq);
        if (pos >= 0 && t->committable < pos) return 0;
    }
    return 1;
}

void sp_offsets_settle_flushes(sp_offsets *o) {
    for (sp_tp *tp = o->tps; tp; tp = tp->next) tp->flushed = -2;
    for (sp_tp *tp = o->tps; tp; tp = tp->next) {
        if (!tp->assigned || tp->flushed != -2) continue;
        int64_t best = -1;
        for (const sp_tp *t = tp; t; t = t->next) {
            if (!t->assigned || t->partition != tp->partition) continue;
            for (int32_t i = 0; i < t->nflushes; i++)
                if (t->flushes[i].seq > best && safe_at(tp, t->flushes[i].seq))
                    best = t->flushes[i].seq;
        }
        for (sp_tp *t = tp; t; t = t->next)
            if (t->assigned && t->partition == tp->partition)
                t->flushed = best < 0 ? -1 : position_at(t, best);
    }
}

void sp_offsets_forget_flushes(sp_tp *tp, int all) {
    int32_t k = 0;
    /* the flush at the committed offset stays: later commits count from it */
    for (int32_t i = 0; !all && i < tp->nflushes; i++)
        if (tp->flushes[i].pos <= tp->committed) k = i;
    if (all) k = tp->nflushes;
    if (k == 0) return;
    memmove(tp->flushes, tp->flushes + k, (size_t)(tp->nflushes - k) * sizeof *tp->flushes);
    tp->nflushes -= k;
}
