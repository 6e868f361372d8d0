#include "sp_offsets.h"

#include <stdlib.h>
#include <string.h>

void sp_offsets_init(sp_offsets *o) {
    o->tps = NULL;
    o->open_segments = 0;
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
