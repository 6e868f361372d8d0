#include "sp_kv.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sp_offsets.h"

/* memcmp's order, inline and eight bytes at a time: store keys are short
 * and the tree compares many of them. */
static inline int bytes_cmp(const unsigned char *a, const unsigned char *b, size_t n) {
    for (; n >= 8; a += 8, b += 8, n -= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
    }
    for (; n; a++, b++, n--)
        if (*a != *b) return *a < *b ? -1 : 1;
    return 0;
}

/* Keys compare as bytes, shorter first on a common prefix (Kafka Streams'
 * Bytes order). */
static int key_cmp(const sp_kv_node *a, const char *key, size_t klen) {
    size_t n = a->klen < klen ? a->klen : klen;
    int c = bytes_cmp((const unsigned char *)a->key, (const unsigned char *)key, n);
    if (c) return c;
    return a->klen < klen ? -1 : a->klen > klen;
}

static int kv_cmp(const sp_kv_node *a, const sp_kv_node *b) {
    return key_cmp(a, b->key, b->klen);
}

RB_GENERATE_STATIC(sp_kv_tree, sp_kv_node, rb, kv_cmp)

/* the allocator's own and the index's (a 16-byte slot at most 3/4 full) */
#define NODE_OVERHEAD ((int64_t)sizeof(sp_kv_node) + 16 + 24)

int sp_kv_init(sp_store *s, const char *name, int kind, int64_t *budget_used,
                  int64_t budget) {
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    s->kind = kind;
    s->budget_used = budget_used;
    s->budget = budget;
    return s->name ? 0 : -1;
}


void sp_kv_release_segs(sp_kv_part *p) {
    for (int i = 0; i < p->nsegs; i++) sp_seg_unref(p->segs[i]);
    p->nsegs = 0;
}

static void part_free(sp_store *s, sp_kv_part *p) {
    sp_kv_clear(s, p);
    sp_kv_release_segs(p);
    sp_kv_index_destroy(&p->index);
    sp_kv_index_destroy(&p->runs);
    free(p->dirty);
}

void sp_kv_destroy(sp_store *s) {
    for (int32_t i = 0; i < s->nparts; i++) part_free(s, &s->parts[i]);
    if (s->budget_used) *s->budget_used -= s->bytes;
    free(s->parts);
    free(s->name);
    free(s->source);
    memset(s, 0, sizeof *s);
}

sp_kv_part *sp_kv_part_of(sp_store *s, int32_t partition, int create) {
    for (int32_t i = 0; i < s->nparts; i++)
        if (s->parts[i].partition == partition) return &s->parts[i];
    if (!create) return NULL;
    sp_kv_part *p = realloc(s->parts, (size_t)(s->nparts + 1) * sizeof *p);
    if (!p) return NULL;
    s->parts = p;
    p = &s->parts[s->nparts++];
    memset(p, 0, sizeof *p);
    p->partition = partition;
    p->changelog_end = -1;
    p->swept_ms = -1;
    p->restored_ms = -1;
    p->ranged = s->ranged;
    RB_INIT(&p->tree);
    return p;
}

/* A key to search the tree by: the comparator reads only klen and key,
 * so a short one goes on the stack. */
typedef struct {
    sp_kv_node n;
    char k[64];
} kv_probe;

static sp_kv_node *probe_of(kv_probe *probe, const char *key, size_t klen) {
    sp_kv_node *q = &probe->n;
    if (klen > sizeof probe->k && !(q = malloc(sizeof *q + klen))) return NULL;
    q->klen = (uint32_t)klen;
    memcpy(q->key, key, klen);
    return q;
}

static void probe_done(kv_probe *probe, sp_kv_node *q) {
    if (q != &probe->n) free(q);
}

/* The age list of an aged store: entries with a value, oldest write
 * first. */
static void age_unlink(sp_kv_part *p, sp_kv_node *n) {
    if (!n->aged) return;
    if (n->older) n->older->newer = n->newer; else p->oldest = n->newer;
    if (n->newer) n->newer->older = n->older; else p->newest = n->older;
    n->older = n->newer = NULL;
    n->aged = 0;
}

/* n was written: it goes to the young end */
static void age_touch(sp_store *s, sp_kv_part *p, sp_kv_node *n) {
    if (!s->aged) return;
    age_unlink(p, n);
    n->older = p->newest;
    if (p->newest) p->newest->newer = n; else p->oldest = n;
    p->newest = n;
    n->aged = 1;
}

/* A ranged partition's window keys (2-byte length, key, then time and
 * more) are kept out of the tree, in one run per key part: a join side's
 * records are read by a key's time range only, and a tree of every record
 * in the window cost a search of some 20 cache misses for each write and
 * each read. A run lists its nodes in key order (by time, as they mostly
 * come: a write goes in from the last one back), and the runs index finds
 * its first node by the key part. Returns the key part's length (2 + the
 * key's), 0 for a key that is not in a run. The partition's own entries
 * (shorter keys) are in the tree and hashed. */
static size_t run_len(const sp_kv_part *p, const char *key, size_t klen) {
    if (!p->ranged || klen < 2) return 0;
    size_t n = 2 + ((size_t)(unsigned char)key[0] << 8 | (unsigned char)key[1]);
    return n <= klen ? n : 0;
}

static sp_kv_node *run_first(const sp_kv_part *p, const char *key, size_t plen) {
    return sp_kv_index_find_prefix(&p->runs, key, plen, sp_kv_index_hash(key, plen));
}

/* the first node of n's run (n->run.prev's next is n but for the first) */
static sp_kv_node *run_first_of(const sp_kv_part *p, sp_kv_node *n, size_t plen) {
    return n->run.prev->run.next != n
               ? n
               : sp_kv_index_find_prefix(&p->runs, n->key, plen, n->hash);
}

/* key's node in its run (plen its key part's length), or NULL */
static sp_kv_node *run_find(const sp_kv_part *p, const char *key, size_t klen, size_t plen) {
    sp_kv_node *first = run_first(p, key, plen);
    if (!first) return NULL;
    for (sp_kv_node *x = first->run.prev;; x = x->run.prev) {
        int c = key_cmp(x, key, klen);
        if (c <= 0) return c == 0 ? x : NULL;
        if (x == first) return NULL;
    }
}

/* A scan across runs orders the partition's nodes once; a change lets
 * that order go. */
static void unorder(sp_kv_part *p) {
    free(p->order);
    p->order = NULL;
    p->norder = 0;
}

/* Puts n (its key set) in its run: 0, or -1 out of memory; *had is the
 * node of the same key if there is one (n is then not put). */
static int run_insert(sp_kv_part *p, sp_kv_node *n, size_t plen, sp_kv_node **had) {
    sp_kv_node *first = run_first(p, n->key, plen), *x;
    *had = NULL;
    n->in_run = 1;
    if (!first) {
        n->hash = sp_kv_index_hash(n->key, plen);
        n->run.next = NULL;
        n->run.prev = n;
        if (sp_kv_index_add(&p->runs, n) != 0) return -1;
        unorder(p);
        return 0;
    }
    n->hash = first->hash;
    int c = 1;
    for (x = first->run.prev; x && (c = kv_cmp(x, n)) > 0; x = x == first ? NULL : x->run.prev)
        ;
    if (x && c == 0) {
        *had = x;
        return 0;
    }
    if (!x) { /* the new first */
        n->run.next = first;
        n->run.prev = first->run.prev;
        first->run.prev = n;
        sp_kv_index_replace(&p->runs, first, n);
    } else {
        n->run.next = x->run.next;
        n->run.prev = x;
        if (x->run.next) x->run.next->run.prev = n; else first->run.prev = n;
        x->run.next = n;
    }
    unorder(p);
    return 0;
}

static void run_unlink(sp_kv_part *p, sp_kv_node *n) {
    sp_kv_node *first = run_first_of(p, n, run_len(p, n->key, n->klen));
    if (n == first) {
        if (n->run.next) {
            n->run.next->run.prev = n->run.prev;
            sp_kv_index_replace(&p->runs, n, n->run.next);
        } else {
            sp_kv_index_remove(&p->runs, n);
        }
    } else {
        n->run.prev->run.next = n->run.next;
        if (n->run.next) n->run.next->run.prev = n->run.prev; else first->run.prev = n->run.prev;
    }
    n->in_run = 0;
    unorder(p);
}

/* key's node without a search down the tree: the node found last (reads
 * are often followed by a write of the same key), or the index's. NULL
 * for a window key of a ranged partition found neither way. */
static sp_kv_node *known(sp_kv_part *p, const char *key, size_t klen) {
    sp_kv_node *n = p->last;
    if (n && n->klen == klen && memcmp(n->key, key, klen) == 0) return n;
    return run_len(p, key, klen) ? NULL
                                 : sp_kv_index_find(&p->index, key, klen, sp_kv_index_hash(key, klen));
}

static sp_kv_node *find(sp_kv_part *p, const char *key, size_t klen) {
    sp_kv_node *n = known(p, key, klen);
    size_t plen;
    if (!n && (plen = run_len(p, key, klen))) n = run_find(p, key, klen, plen);
    if (n) p->last = n;
    return n;
}

sp_kv_node *sp_kv_get(sp_kv_part *p, const char *key, size_t klen) {
    sp_kv_node *n = find(p, key, klen);
    return n && n->val ? n : NULL;
}

static int charge(sp_store *s, int64_t delta, const char **err) {
    if (delta > 0 && s->budget > 0 && s->budget_used &&
        *s->budget_used + delta > s->budget) {
        *err = "the state stores' memory budget is exhausted";
        return -1;
    }
    s->bytes += delta;
    if (s->budget_used) *s->budget_used += delta;
    return 0;
}

static int mark_dirty(sp_store *s, sp_kv_part *p, sp_kv_node *n) {
    if (!s->track || n->dirty) return 0;
    if (p->ndirty == p->dirty_cap) {
        size_t cap = p->dirty_cap ? p->dirty_cap * 2 : 64;
        sp_kv_node **d = realloc(p->dirty, cap * sizeof *d);
        if (!d) return -1;
        p->dirty = d;
        p->dirty_cap = cap;
    }
    n->didx = (uint32_t)p->ndirty;
    p->dirty[p->ndirty++] = n;
    n->dirty = 1;
    return 0;
}

/* Takes a node off the dirty list (the last one takes its place). */
static void unmark_dirty(sp_kv_part *p, sp_kv_node *n) {
    sp_kv_node *last = p->dirty[--p->ndirty];
    p->dirty[n->didx] = last;
    last->didx = n->didx;
    n->dirty = 0;
}

static void unlink_node(sp_store *s, sp_kv_part *p, sp_kv_node *n);

/* A node's first value lives in the node's own block, after its key: one
 * allocation, and a lookup finds the value in the cache lines it read the
 * key from. A value of another size later gets a block of its own. It
 * starts 16-aligned, as malloc's would: values changed in place hold
 * int64s and doubles (a window's cursor, an accumulator). */
static size_t inline_offset(size_t klen) {
    return (offsetof(sp_kv_node, key) + klen + 15) & ~(size_t)15;
}

static int val_inline(const sp_kv_node *n) {
    return n->val == (const char *)n + inline_offset(n->klen);
}

static void free_val(sp_kv_node *n) {
    if (!val_inline(n)) free(n->val);
}

/* put with the lookup done: n is key's node. */
static int put_at(sp_store *s, sp_kv_part *p, sp_kv_node *n, const char *val, size_t vlen,
                  int64_t ts, int mark, const char **err) {
    if (n->val && n->vlen == vlen) {
        /* same size (counters, accumulators): overwritten in place */
        if (vlen) memmove(n->val, val, vlen);
    } else {
        int64_t delta = (int64_t)vlen - (n->val ? (int64_t)n->vlen : 0);
        char *v = malloc(vlen ? vlen : 1);
        if (!v) goto oom;
        if (charge(s, delta, err) != 0) {
            free(v);
            return SP_STORE_EFULL;
        }
        if (vlen) memcpy(v, val, vlen);
        if (!n->val) p->count++;
        free_val(n);
        n->val = v;
        n->vlen = (uint32_t)vlen;
    }
    n->ts = ts;
    p->last = n;
    age_touch(s, p, n);
    if (!mark) n->logged = 1; /* a changelog record being restored */
    if (mark && mark_dirty(s, p, n) != 0) goto oom;
    return 0;
oom:
    *err = "out of memory";
    return -1;
}

/* Puts n (its key set) in the tree and the index, or in its run: 0, or -1
 * out of memory; *had is the node of the same key if there is one (n is
 * then not put). */
static int link_node(sp_kv_part *p, sp_kv_node *n, sp_kv_node **had) {
    size_t plen = run_len(p, n->key, n->klen);
    if (plen) return run_insert(p, n, plen, had);
    if ((*had = RB_INSERT(sp_kv_tree, &p->tree, n))) return 0;
    n->hashed = 1;
    n->hash = sp_kv_index_hash(n->key, n->klen);
    if (sp_kv_index_add(&p->index, n) != 0) {
        RB_REMOVE(sp_kv_tree, &p->tree, n);
        return -1;
    }
    if (p->ranged) unorder(p);
    return 0;
}

/* put of a key without a known node: a new node goes into the tree in one
 * search (or into its run), which finds a window key's node instead when
 * it has one. */
static int insert(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
                  const char *val, size_t vlen, int64_t ts, int mark, const char **err) {
    int64_t size = NODE_OVERHEAD + (int64_t)klen + (int64_t)vlen;
    if (charge(s, size, err) != 0) {
        /* a full budget: only a key there already can change */
        sp_kv_node *n = find(p, key, klen);
        return n ? put_at(s, p, n, val, vlen, ts, mark, err) : SP_STORE_EFULL;
    }
    sp_kv_node *n = calloc(1, inline_offset(klen) + vlen);
    if (!n) goto oom;
    n->klen = (uint32_t)klen;
    memcpy(n->key, key, klen);
    n->val = (char *)n + inline_offset(klen);
    n->vlen = (uint32_t)vlen;
    sp_kv_node *had;
    if (link_node(p, n, &had) != 0) {
        free(n);
        goto oom;
    }
    if (had) {
        free(n);
        charge(s, -size, err);
        return put_at(s, p, had, val, vlen, ts, mark, err);
    }
    /* put_at copies the value into place */
    p->count++;
    return put_at(s, p, n, val, vlen, ts, mark, err);
oom:
    charge(s, -size, err);
    *err = "out of memory";
    return -1;
}

static int put(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
               const char *val, size_t vlen, int64_t ts, int mark,
               const char **err) {
    sp_kv_node *n = known(p, key, klen);
    return n ? put_at(s, p, n, val, vlen, ts, mark, err)
             : insert(s, p, key, klen, val, vlen, ts, mark, err);
}

int sp_kv_put(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
              const char *val, size_t vlen, int64_t ts, const char **err) {
    return put(s, p, key, klen, val, vlen, ts, 1, err);
}

char *sp_kv_upsert(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
                   size_t vlen, int64_t ts, int *created) {
    const char *err;
    sp_kv_node *n = find(p, key, klen);
    *created = !(n && n->val && n->vlen == vlen);
    if (*created) {
        /* a new entry, or one of another size: zeroed bytes put in */
        char zero[256];
        char *tmp = vlen <= sizeof zero ? zero : calloc(1, vlen);
        if (!tmp) goto oom;
        if (tmp == zero) memset(zero, 0, vlen);
        int rc = n ? put_at(s, p, n, tmp, vlen, ts, 1, &err)
                   : insert(s, p, key, klen, tmp, vlen, ts, 1, &err);
        if (tmp != zero) free(tmp);
        if (rc == SP_STORE_EFULL) {
            *created = SP_STORE_EFULL;
            return NULL;
        }
        if (rc != 0) goto oom;
        n = p->last;
        return n->val;
    }
    n->ts = ts;
    age_touch(s, p, n);
    if (mark_dirty(s, p, n) != 0) goto oom;
    return n->val;
oom:
    *created = -1;
    return NULL;
}

static void unlink_node(sp_store *s, sp_kv_part *p, sp_kv_node *n) {
    const char *err;
    if (p->last == n) p->last = NULL;
    if (p->cursor == n) p->cursor = NULL;
    age_unlink(p, n);
    if (n->in_run) {
        run_unlink(p, n);
    } else {
        if (n->hashed) sp_kv_index_remove(&p->index, n);
        RB_REMOVE(sp_kv_tree, &p->tree, n);
        if (p->ranged) unorder(p);
    }
    charge(s, -(NODE_OVERHEAD + (int64_t)n->klen), &err);
    free(n);
}

void sp_kv_drop_part(sp_store *s, int32_t partition) {
    for (int32_t i = 0; i < s->nparts; i++) {
        sp_kv_part *p = &s->parts[i];
        if (p->partition != partition) continue;
        part_free(s, p);
        s->parts[i] = s->parts[--s->nparts];
        return;
    }
}

/* How a node goes: a delete the changelog is told of, one it told
 * (restored), or one it is not told of (a retention store's expiry). */
enum { DEL_RESTORED, DEL_LOGGED, DEL_FORGOTTEN };

static int del_node(sp_store *s, sp_kv_part *p, sp_kv_node *n, int how, const char **err) {
    if (!n || !n->val) return 0;
    charge(s, -(int64_t)n->vlen, err);
    age_unlink(p, n);
    free_val(n);
    n->val = NULL;
    n->vlen = 0;
    p->count--;
    /* with a changelog, the node stays as a tombstone until the changelog
     * has the delete; one the changelog never had goes at once, as does
     * one it is not told of (a join's records, expiring by the thousand
     * between two flushes, made its tree several times deeper) */
    if (how == DEL_FORGOTTEN || (how == DEL_LOGGED && s->track && !n->logged)) {
        if (n->dirty) unmark_dirty(p, n);
        unlink_node(s, p, n);
    } else if (how == DEL_LOGGED && s->track) {
        if (mark_dirty(s, p, n) != 0) {
            *err = "out of memory";
            return -1;
        }
    } else if (!n->dirty) {
        unlink_node(s, p, n);
    }
    return 0;
}

/* How an expired node goes: a retention store's changelog forgets by time
 * itself. */
static int expired(const sp_store *s) {
    return s->retention ? DEL_FORGOTTEN : DEL_LOGGED;
}

static int del(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
               int how, const char **err) {
    return del_node(s, p, find(p, key, klen), how, err);
}

int sp_kv_delete(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
                 const char **err) {
    return del(s, p, key, klen, DEL_LOGGED, err);
}

int sp_kv_apply(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
                const char *val, size_t vlen, int64_t ts, const char **err) {
    if (!val) return del(s, p, key, klen, DEL_RESTORED, err);
    return put(s, p, key, klen, val, vlen, ts, 0, err);
}

/* A partition's nodes one by one, the tree's in order, then the runs' (in
 * no order across runs): the first, and the one after x. Nothing may be
 * linked or unlinked meanwhile. */
static sp_kv_node *run_from_slot(const sp_kv_part *p, uint32_t j) {
    for (; p->runs.mask && j <= p->runs.mask; j++)
        if (p->runs.slots[j].node) return p->runs.slots[j].node;
    return NULL;
}

static sp_kv_node *first_node(sp_kv_part *p) {
    sp_kv_node *x = RB_MIN(sp_kv_tree, &p->tree);
    return x ? x : run_from_slot(p, 0);
}

static sp_kv_node *next_node(sp_kv_part *p, sp_kv_node *x) {
    if (!x->in_run) {
        sp_kv_node *n = RB_NEXT(sp_kv_tree, &p->tree, x);
        return n ? n : run_from_slot(p, 0);
    }
    if (x->run.next) return x->run.next;
    sp_kv_node *first = run_first_of(p, x, run_len(p, x->key, x->klen));
    return run_from_slot(p, sp_kv_index_slot(&p->runs, first) + 1);
}

/* Every node of a partition, in no order: an array to free; NULL (and
 * *count 0) out of memory. */
static sp_kv_node **all_nodes(sp_kv_part *p, size_t *count) {
    size_t n = 0, i = 0;
    sp_kv_node *x, **a;
    for (x = first_node(p); x; x = next_node(p, x)) n++;
    *count = 0;
    if (!(a = malloc((n ? n : 1) * sizeof *a))) return NULL;
    for (x = first_node(p); x; x = next_node(p, x)) a[i++] = x;
    *count = n;
    return a;
}

int64_t sp_kv_expire(sp_store *s, sp_kv_part *p, int64_t ts) {
    const char *err;
    int64_t n = 0;
    sp_kv_node *x, *next;
    for (x = RB_MIN(sp_kv_tree, &p->tree); x; x = next) {
        next = RB_NEXT(sp_kv_tree, &p->tree, x);
        /* del_node may free x: the next node is taken first */
        if (x->val && x->ts <= ts && del_node(s, p, x, expired(s), &err) == 0) n++;
    }
    if (p->runs.used) {
        /* del_node may change the runs' index: their nodes are listed
         * first (the tree's, left, are later than ts) */
        size_t count;
        sp_kv_node **a = all_nodes(p, &count);
        for (size_t i = 0; i < count; i++)
            if (a[i]->val && a[i]->ts <= ts && del_node(s, p, a[i], expired(s), &err) == 0) n++;
        free(a);
    }
    return n;
}

int64_t sp_kv_expire_oldest(sp_store *s, sp_kv_part *p, int64_t ts) {
    const char *err;
    int64_t n = 0;
    sp_kv_node *x;
    /* del_node takes x off the list */
    while ((x = p->oldest) && x->ts <= ts) {
        if (!x->val) {
            age_unlink(p, x);
            continue;
        }
        if (del_node(s, p, x, expired(s), &err) != 0) break;
        n++;
    }
    return n;
}

void sp_kv_set_aged(sp_store *s) {
    if (s->aged) return;
    s->aged = 1;
    /* entries there already (rare: stores are marked when opened) join in
     * the order they are found */
    for (int32_t i = 0; i < s->nparts; i++)
        for (sp_kv_node *n = first_node(&s->parts[i]); n; n = next_node(&s->parts[i], n))
            if (n->val) age_touch(s, &s->parts[i], n);
}

int sp_kv_set_ranged(sp_store *s) {
    if (s->ranged) return 0;
    s->ranged = 1;
    /* window keys there already (rare: stores are marked when opened) go
     * from the tree to their runs */
    for (int32_t i = 0; i < s->nparts; i++) {
        sp_kv_part *p = &s->parts[i];
        sp_kv_node *n, *next, *had;
        p->ranged = 1;
        for (n = RB_MIN(sp_kv_tree, &p->tree); n; n = next) {
            next = RB_NEXT(sp_kv_tree, &p->tree, n);
            size_t plen = run_len(p, n->key, n->klen);
            if (!plen) continue;
            sp_kv_index_remove(&p->index, n);
            n->hashed = 0;
            RB_REMOVE(sp_kv_tree, &p->tree, n);
            if (run_insert(p, n, plen, &had) != 0) return -1;
        }
    }
    return 0;
}

/* A ranged partition's nodes in key order: a binary search of its order,
 * made when asked (a scan across runs: sproc query, a checkpoint). */
static int order_cmp(const void *a, const void *b) {
    return kv_cmp(*(sp_kv_node *const *)a, *(sp_kv_node *const *)b);
}

/* whether x comes after from (or is it, when not strict) */
static int from_on(const sp_kv_node *x, const char *from, size_t flen, int strict) {
    int c = from ? key_cmp(x, from, flen) : 1;
    return c > 0 || (c == 0 && !strict);
}

/* The least live key from from on, found by looking at every node: slow,
 * for when the order cannot be made (out of memory), so that a scan (a
 * checkpoint's) is never cut short. */
static sp_kv_node *least_from(sp_kv_part *p, const char *from, size_t flen, int strict) {
    sp_kv_node *best = NULL;
    for (sp_kv_node *x = first_node(p); x; x = next_node(p, x))
        if (x->val && from_on(x, from, flen, strict) && (!best || kv_cmp(x, best) < 0)) best = x;
    return best;
}

static sp_kv_node *ordered_seek(sp_kv_part *p, const char *from, size_t flen, int strict) {
    if (!p->order) {
        if (!(p->order = all_nodes(p, &p->norder))) return least_from(p, from, flen, strict);
        qsort(p->order, p->norder, sizeof *p->order, order_cmp);
    }
    size_t lo = 0, hi = p->norder;
    while (from && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(p->order[mid], from, flen);
        if (c < 0 || (strict && c == 0)) lo = mid + 1; else hi = mid;
    }
    while (lo < p->norder && !p->order[lo]->val) lo++;
    return lo < p->norder ? p->order[lo] : NULL;
}

sp_kv_node *sp_kv_seek(sp_kv_part *p, const char *from, size_t flen, int strict) {
    sp_kv_node *n;
    if (p->ranged)
        return p->cursor = ordered_seek(p, from, flen, strict);
    if (!from) {
        n = RB_MIN(sp_kv_tree, &p->tree);
    } else if (p->cursor && p->cursor->klen == flen && memcmp(p->cursor->key, from, flen) == 0) {
        /* a scan going on from the key it was given last */
        n = strict ? RB_NEXT(sp_kv_tree, &p->tree, p->cursor) : p->cursor;
    } else {
        kv_probe probe;
        sp_kv_node *q = probe_of(&probe, from, flen);
        if (!q) return NULL;
        n = RB_NFIND(sp_kv_tree, &p->tree, q);
        probe_done(&probe, q);
        if (n && strict && n->klen == flen && memcmp(n->key, from, flen) == 0)
            n = RB_NEXT(sp_kv_tree, &p->tree, n);
    }
    while (n && !n->val) n = RB_NEXT(sp_kv_tree, &p->tree, n);
    p->cursor = n;
    return n;
}

sp_kv_node *sp_kv_seek_in(sp_kv_part *p, const char *from, size_t flen, size_t plen,
                          int strict) {
    sp_kv_node *n;
    if (run_len(p, from, flen) != plen) {
        /* not a run: the ordered scan, to the end of the prefix */
        n = sp_kv_seek(p, from, flen, strict);
        return n && n->klen >= plen && memcmp(n->key, from, plen) == 0 ? n : NULL;
    }
    if (p->cursor && p->cursor->in_run && p->cursor->klen == flen &&
        memcmp(p->cursor->key, from, flen) == 0) {
        /* a scan going on from the key it was given last */
        n = strict ? p->cursor->run.next : p->cursor;
    } else {
        int c;
        for (n = run_first(p, from, plen); n && ((c = key_cmp(n, from, flen)) < 0 || (strict && c == 0));
             n = n->run.next)
            ;
    }
    while (n && !n->val) n = n->run.next;
    p->cursor = n;
    return n;
}

void sp_kv_clear(sp_store *s, sp_kv_part *p) {
    const char *err;
    sp_kv_node *n;
    /* a run's first node, unlinked, leaves the next one in its slot (a
     * run's last leaves its slot to one that probed past it, or empty) */
    for (uint32_t j = 0; p->runs.mask && j <= p->runs.mask; j++)
        while ((n = p->runs.slots[j].node)) {
            if (n->val) {
                charge(s, -(int64_t)n->vlen, &err);
                free_val(n);
                p->count--;
            }
            unlink_node(s, p, n);
        }
    while ((n = RB_MIN(sp_kv_tree, &p->tree))) {
        if (n->val) {
            charge(s, -(int64_t)n->vlen, &err);
            free_val(n);
            p->count--;
        }
        unlink_node(s, p, n);
    }
    p->ndirty = 0;
    unorder(p);
}

void sp_kv_clean(sp_store *s, sp_kv_part *p) {
    for (size_t i = 0; i < p->ndirty; i++) {
        sp_kv_node *n = p->dirty[i];
        n->dirty = 0;
        n->logged = 1;
        if (!n->val) unlink_node(s, p, n);
    }
    p->ndirty = 0;
}
