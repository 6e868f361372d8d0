#include "sp_kv_index.h"

#include <stdlib.h>
#include <string.h>

#include "sp_kv.h"

/* Store keys are short byte strings: eight bytes at a time through a
 * multiply, then a final mix so that keys differing only in their last
 * bytes (a counter, a time) spread over the slots. */
uint32_t sp_kv_index_hash(const char *key, size_t klen) {
    const uint64_t m = 0x9e3779b97f4a7c15ULL;
    uint64_t h = (uint64_t)klen * m;
    for (; klen >= 8; key += 8, klen -= 8) {
        uint64_t x;
        memcpy(&x, key, 8);
        h = (h ^ x) * m;
        h ^= h >> 29;
    }
    if (klen) {
        uint64_t x = 0;
        memcpy(&x, key, klen);
        h = (h ^ x) * m;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

sp_kv_node *sp_kv_index_find(const sp_kv_index *ix, const char *key, size_t klen, uint32_t h) {
    if (!ix->mask) return NULL;
    for (uint32_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
        const sp_kv_slot *e = &ix->slots[i];
        if (!e->node) return NULL;
        if (e->hash == h && e->node->klen == klen && memcmp(e->node->key, key, klen) == 0)
            return e->node;
    }
}

sp_kv_node *sp_kv_index_find_prefix(const sp_kv_index *ix, const char *prefix, size_t plen,
                                    uint32_t h) {
    if (!ix->mask) return NULL;
    for (uint32_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
        const sp_kv_slot *e = &ix->slots[i];
        if (!e->node) return NULL;
        if (e->hash == h && e->node->klen >= plen && memcmp(e->node->key, prefix, plen) == 0)
            return e->node;
    }
}

static void place(sp_kv_slot *slots, uint32_t mask, sp_kv_node *n, uint32_t h) {
    uint32_t i = h & mask;
    while (slots[i].node) i = (i + 1) & mask;
    slots[i].node = n;
    slots[i].hash = h;
}

/* at most 3/4 full: a miss (most lookups of a join) ends at an empty slot */
static int grow(sp_kv_index *ix) {
    uint32_t cap = ix->mask ? (ix->mask + 1) * 2 : 16;
    sp_kv_slot *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (uint32_t i = 0; ix->mask && i <= ix->mask; i++)
        if (ix->slots[i].node) place(slots, cap - 1, ix->slots[i].node, ix->slots[i].hash);
    free(ix->slots);
    ix->slots = slots;
    ix->mask = cap - 1;
    return 0;
}

int sp_kv_index_add(sp_kv_index *ix, sp_kv_node *n) {
    if ((ix->used + 1) * 4 > (ix->mask ? ix->mask + 1 : 0) * 3 && grow(ix) != 0) return -1;
    place(ix->slots, ix->mask, n, n->hash);
    ix->used++;
    return 0;
}

uint32_t sp_kv_index_slot(const sp_kv_index *ix, const sp_kv_node *n) {
    uint32_t i = n->hash & ix->mask;
    while (ix->slots[i].node && ix->slots[i].node != n) i = (i + 1) & ix->mask;
    return i;
}

void sp_kv_index_replace(sp_kv_index *ix, const sp_kv_node *old, sp_kv_node *by) {
    if (!ix->mask) return;
    sp_kv_slot *e = &ix->slots[sp_kv_index_slot(ix, old)];
    if (e->node) e->node = by;
}

/* Backward-shift deletion: the entries after the hole that probed past it
 * move back, so that lookups never need tombstones. */
void sp_kv_index_remove(sp_kv_index *ix, const sp_kv_node *n) {
    if (!ix->mask) return;
    uint32_t i = sp_kv_index_slot(ix, n);
    if (!ix->slots[i].node) return;
    ix->used--;
    for (uint32_t j = (i + 1) & ix->mask; ix->slots[j].node; j = (j + 1) & ix->mask) {
        uint32_t home = ix->slots[j].hash & ix->mask;
        /* j's entry may fill the hole at i unless its home lies in (i, j] */
        if (((j - home) & ix->mask) >= ((j - i) & ix->mask)) {
            ix->slots[i] = ix->slots[j];
            i = j;
        }
    }
    ix->slots[i].node = NULL;
}

void sp_kv_index_destroy(sp_kv_index *ix) {
    free(ix->slots);
    memset(ix, 0, sizeof *ix);
}
