/* The key-value store under the Lua API: byte order for scans, dirty lists
 * for the changelog (one entry per key per batch, deletes as tombstones),
 * restore without dirt, and memory accounting against the budget. */
#include <stdio.h>
#include <stdlib.h>

#include "sp_kv.h"
#include "sp_test.h"

#define S(lit) lit, sizeof lit - 1

/* A store with a changelog (dirty lists kept), and its partition 0. */
static sp_kv_part *logged_store(sp_store *s, int64_t *used) {
    sp_kv_init(s, "t", 0, used, 0);
    s->track = 1;
    return sp_kv_part_of(s, 0, 1);
}

/* The tests' random numbers: a fixed sequence, the same on every run. */
static void next_random(uint32_t *r) {
    *r = *r * 1103515245u + 12345u;
}

static void ordered_scans(void) {
    int64_t used = 0;
    sp_store s;
    const char *err;
    sp_kv_init(&s, "t", 0, &used, 0);
    sp_kv_part *p = sp_kv_part_of(&s, 3, 1);
    const char *keys[] = {"b", "a", "ab", "", "c", "b\x01"};
    for (int i = 0; i < 6; i++)
        SP_CHECK_INT(sp_kv_put(&s, p, keys[i], strlen(keys[i]), S("v"), 0, &err), 0);
    /* bytes order, shorter first on a common prefix */
    const char *want[] = {"", "a", "ab", "b", "b\x01", "c"};
    sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0);
    for (int i = 0; i < 6; i++, n = n ? sp_kv_seek(p, n->key, n->klen, 1) : NULL) {
        SP_CHECK(n != NULL);
        if (n) SP_CHECK_MEM(n->key, n->klen, want[i]);
    }
    SP_CHECK(n == NULL);
    n = sp_kv_seek(p, S("aa"), 0);
    SP_CHECK(n && n->klen == 2 && memcmp(n->key, "ab", 2) == 0);
    SP_CHECK(sp_kv_part_of(&s, 4, 0) == NULL);
    sp_kv_destroy(&s);
    SP_CHECK_INT(used, 0);
}

/* Bytes order with zero bytes and long common prefixes (the comparison
 * goes eight bytes at a time): keys of 0-16 bytes over {0, 1, 'a'} scan in
 * memcmp order, shorter first, and a search finds each. */
typedef struct {
    char k[16];
    size_t n;
} tkey;

static int tkey_cmp(const void *x, const void *y) {
    const tkey *a = x, *b = y;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->k, b->k, n);
    if (c) return c;
    return a->n < b->n ? -1 : a->n > b->n;
}

static void order_of_shared_prefixes(void) {
    enum { N = 4000 };
    static tkey keys[N];
    int64_t used = 0;
    sp_store s;
    const char *err;
    sp_kv_init(&s, "t", 0, &used, 0);
    sp_kv_part *p = sp_kv_part_of(&s, 0, 1);
    uint32_t rnd = 99;
    for (int i = 0; i < N; i++) {
        /* a run of 'a' (up to 13), then up to 3 random bytes: many keys
         * agree in their first 8 or 12 bytes */
        next_random(&rnd);
        size_t run = (rnd >> 8) % 14, tail = (rnd >> 16) % 4;
        memset(keys[i].k, 'a', run);
        for (size_t j = run; j < run + tail; j++) {
            next_random(&rnd);
            keys[i].k[j] = "\0\1a"[(rnd >> 12) % 3];
        }
        keys[i].n = run + tail;
        sp_kv_put(&s, p, keys[i].k, keys[i].n, "v", 1, 0, &err);
    }
    qsort(keys, N, sizeof keys[0], tkey_cmp);
    int bad = 0, at = 0;
    sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0);
    for (int i = 0; i < N; i++) {
        if (i > 0 && tkey_cmp(&keys[i - 1], &keys[i]) == 0) continue; /* put twice */
        if (!n || n->klen != keys[i].n || memcmp(n->key, keys[i].k, n->klen) != 0) bad++;
        at++;
        if (n) n = sp_kv_seek(p, n->key, n->klen, 1);
        /* and each key is found by a search from the root */
        p->cursor = NULL;
        sp_kv_node *f = sp_kv_seek(p, keys[i].k, keys[i].n, 0);
        if (!f || f->klen != keys[i].n || memcmp(f->key, keys[i].k, f->klen) != 0) bad++;
    }
    SP_CHECK(n == NULL);
    SP_CHECK_INT(bad, 0);
    SP_CHECK_INT(p->count, at);
    sp_kv_destroy(&s);
}

static void dirty_lists_and_tombstones(void) {
    int64_t used = 0;
    sp_store s;
    const char *err;
    sp_kv_part *p = logged_store(&s, &used);
    sp_kv_put(&s, p, S("k"), S("1"), 0, &err);
    sp_kv_put(&s, p, S("k"), S("2"), 0, &err);
    sp_kv_put(&s, p, S("j"), S("1"), 0, &err);
    SP_CHECK_INT(p->ndirty, 2); /* one changelog record per key */
    SP_CHECK_INT(p->count, 2);
    sp_kv_clean(&s, p);
    SP_CHECK_INT(p->ndirty, 0);
    sp_kv_delete(&s, p, S("k"), &err);
    SP_CHECK(sp_kv_get(p, S("k")) == NULL);
    SP_CHECK_INT(p->ndirty, 1);
    SP_CHECK(p->dirty[0]->val == NULL); /* a tombstone for the changelog */
    sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0);
    SP_CHECK(n && n->klen == 1 && n->key[0] == 'j'); /* scans skip it */
    sp_kv_clean(&s, p);
    SP_CHECK_INT(p->count, 1);
    /* a restored record changes state without dirt */
    SP_CHECK_INT(sp_kv_apply(&s, p, S("r"), S("x"), 0, &err), 0);
    SP_CHECK_INT(sp_kv_apply(&s, p, S("j"), NULL, 0, 0, &err), 0);
    SP_CHECK_INT(p->ndirty, 0);
    SP_CHECK_INT(p->count, 1);
    sp_kv_drop_part(&s, 0);
    SP_CHECK_INT(s.nparts, 0);
    SP_CHECK_INT(s.bytes, 0);
    SP_CHECK_INT(used, 0);
    sp_kv_destroy(&s);
}

static void memory_budget(void) {
    int64_t used = 0;
    sp_store a, b;
    const char *err = NULL;
    sp_kv_init(&a, "a", 0, &used, 2000);
    sp_kv_init(&b, "b", 0, &used, 2000);
    sp_kv_part *pa = sp_kv_part_of(&a, 0, 1), *pb = sp_kv_part_of(&b, 0, 1);
    char key[16];
    int i, rc = 0;
    for (i = 0; i < 1000 && rc == 0; i++) {
        snprintf(key, sizeof key, "k%d", i);
        rc = sp_kv_put(i % 2 ? &a : &b, i % 2 ? pa : pb, key, strlen(key), S("value"), 0, &err);
    }
    SP_CHECK_INT(rc, SP_STORE_EFULL); /* the budget is shared by both */
    SP_CHECK(err != NULL);
    SP_CHECK(used <= 2000 && used == a.bytes + b.bytes);
    SP_CHECK_INT(pa->count + pb->count, i - 1); /* the failed put left nothing */
    /* growing a value counts too; shrinking frees */
    SP_CHECK_INT(sp_kv_put(&a, pa, S("k1"), S("v"), 0, &err), 0);
    int64_t before = used;
    SP_CHECK_INT(sp_kv_delete(&a, pa, S("k1"), &err), 0);
    SP_CHECK(used < before);
    sp_kv_destroy(&a);
    SP_CHECK_INT(used, b.bytes);
    sp_kv_destroy(&b);
    SP_CHECK_INT(used, 0);
}

static void expiry(void) {
    int64_t used = 0;
    sp_store s;
    const char *err;
    sp_kv_part *p = logged_store(&s, &used);
    sp_kv_put(&s, p, S("old"), S("1"), 100, &err);
    sp_kv_put(&s, p, S("new"), S("2"), 200, &err);
    sp_kv_clean(&s, p);
    SP_CHECK_INT(sp_kv_expire(&s, p, 150), 1);
    SP_CHECK(sp_kv_get(p, S("old")) == NULL);
    SP_CHECK(sp_kv_get(p, S("new")) != NULL);
    SP_CHECK_INT(p->ndirty, 1); /* the expiry goes to the changelog */
    SP_CHECK_INT(sp_kv_expire(&s, p, 150), 0);
    sp_kv_destroy(&s);
    SP_CHECK_INT(used, 0);
}

/* An aged store expires oldest write first, without a scan: a rewrite
 * makes an entry young again, a delete takes it off the list, and one
 * written out of time order holds back the ones written after it. */
static void expiry_oldest_first(void) {
    int64_t used = 0;
    sp_store s;
    const char *err;
    sp_kv_part *p = logged_store(&s, &used);
    sp_kv_set_aged(&s);
    sp_kv_put(&s, p, S("a"), S("1"), 100, &err);
    sp_kv_put(&s, p, S("b"), S("2"), 110, &err);
    sp_kv_put(&s, p, S("c"), S("3"), 120, &err);
    sp_kv_put(&s, p, S("a"), S("4"), 130, &err); /* a is young again */
    SP_CHECK_INT(sp_kv_delete(&s, p, S("c"), &err), 0);
    sp_kv_put(&s, p, S("late"), S("5"), 105, &err);
    sp_kv_put(&s, p, S("d"), S("6"), 106, &err);
    sp_kv_clean(&s, p);
    SP_CHECK_INT(sp_kv_expire_oldest(&s, p, 125), 1); /* b; a is at 130 now */
    SP_CHECK(sp_kv_get(p, S("b")) == NULL && sp_kv_get(p, S("a")) != NULL);
    SP_CHECK(sp_kv_get(p, S("late")) != NULL); /* held back by a */
    SP_CHECK_INT(p->ndirty, 1);                /* b's tombstone */
    SP_CHECK_INT(sp_kv_expire_oldest(&s, p, 130), 3); /* a, late and d */
    SP_CHECK_INT(p->count, 0);
    SP_CHECK(p->oldest == NULL && p->newest == NULL);
    sp_kv_clean(&s, p);
    SP_CHECK_INT(sp_kv_expire_oldest(&s, p, 1000), 0);
    sp_kv_destroy(&s);
    SP_CHECK_INT(used, 0);
}

/* A join side's store (a retention) expires with no tombstone: its
 * changelog deletes by time, and its tree keeps no dead nodes for it. */
static void expiry_without_tombstones(void) {
    int64_t used = 0;
    sp_store s;
    const char *err;
    sp_kv_part *p = logged_store(&s, &used);
    sp_kv_set_aged(&s);
    s.retention = 50;
    sp_kv_put(&s, p, S("a"), S("1"), 100, &err);
    sp_kv_put(&s, p, S("b"), S("2"), 110, &err);
    sp_kv_clean(&s, p); /* both in the changelog */
    sp_kv_put(&s, p, S("c"), S("3"), 120, &err);
    SP_CHECK_INT(sp_kv_expire_oldest(&s, p, 115), 2);
    SP_CHECK_INT(p->ndirty, 1); /* c's put only */
    SP_CHECK(p->dirty[0]->val != NULL);
    SP_CHECK(sp_kv_seek(p, NULL, 0, 0) && sp_kv_seek(p, NULL, 0, 0)->key[0] == 'c');
    /* one never flushed leaves the tree and the changed keys at once */
    SP_CHECK_INT(sp_kv_expire_oldest(&s, p, 125), 1);
    SP_CHECK_INT(p->ndirty, 0);
    SP_CHECK_INT(used, 0);
    sp_kv_destroy(&s);
}

/* Key k: "k<k>", or as a ranged store has it, half of them window keys
 * (2-byte length, then the key) and half the store's own. */
static int key_of(char *key, int k, int ranged) {
    if (!ranged || k % 2) return snprintf(key, 16, "k%d", k);
    int n = snprintf(key + 2, 14, "w%d", k);
    key[0] = 0;
    key[1] = (char)n;
    return n + 2;
}

/* Gets go through the hash index (but a ranged store's window keys through
 * their runs), scans through the tree (or a ranged store's order): after many puts and deletes (nodes
 * freed at cleans, the index growing and closing holes) both agree with
 * what was written. */
static void lookups_agree_with_scans(int ranged) {
    enum { KEYS = 3000, OPS = 60000 };
    static int have[KEYS]; /* the value written last, 0 none */
    memset(have, 0, sizeof have);
    int64_t used = 0;
    sp_store s;
    const char *err;
    sp_kv_part *p = logged_store(&s, &used);
    uint32_t rnd = 12345;
    int bad = 0;
    for (int op = 0; op < OPS; op++) {
        /* a store made ranged with entries in it */
        if (ranged && op == OPS / 4) SP_CHECK_INT(sp_kv_set_ranged(&s), 0);
        next_random(&rnd);
        int k = (int)((rnd >> 8) % KEYS), v = op + 1;
        char key[16], val[16];
        int klen = key_of(key, k, ranged);
        if ((rnd >> 4) % 3 == 0) {
            SP_CHECK_INT(sp_kv_delete(&s, p, key, (size_t)klen, &err), 0);
            have[k] = 0;
        } else {
            int vlen = snprintf(val, sizeof val, "%d", v);
            SP_CHECK_INT(sp_kv_put(&s, p, key, (size_t)klen, val, (size_t)vlen, op, &err), 0);
            have[k] = v;
        }
        if (op % 5000 == 0) sp_kv_clean(&s, p); /* the tombstones go */
    }
    int64_t live = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[16], val[16];
        int klen = key_of(key, k, ranged);
        sp_kv_node *n = sp_kv_get(p, key, (size_t)klen);
        int vlen = snprintf(val, sizeof val, "%d", have[k]);
        if (have[k] ? !(n && n->vlen == (uint32_t)vlen && memcmp(n->val, val, (size_t)vlen) == 0)
                    : n != NULL)
            bad++;
        live += have[k] != 0;
    }
    SP_CHECK_INT(bad, 0);
    int64_t scanned = 0;
    for (sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0); n; n = sp_kv_seek(p, n->key, n->klen, 1))
        scanned++;
    SP_CHECK_INT(scanned, live);
    SP_CHECK_INT(p->count, live);
    sp_kv_destroy(&s);
    SP_CHECK_INT(used, 0);
}

/* A ranged store's window key: key part "w<k>", then time t (8 bytes, big
 * endian: byte order is time order). */
static int wkey_of(char *key, int k, int t) {
    int n = snprintf(key + 2, 14, "w%d", k);
    key[0] = 0;
    key[1] = (char)n;
    for (int i = 0; i < 8; i++) key[2 + n + i] = (char)(i < 6 ? 0 : (t >> (8 * (7 - i))) & 0xff);
    return n + 10;
}

/* A ranged store keeps each key part's window keys in a run of their own:
 * after puts and deletes in any time order (new firsts, lasts and middles
 * of runs, runs emptied and made again, nodes freed at cleans), lookups,
 * a key's time ranges and the ordered scan across runs all agree with
 * what was written, and expiry and clearing account for every byte. */
static void runs_agree_with_what_was_written(void) {
    enum { KEYS = 40, TIMES = 50, OPS = 40000 };
    static int have[KEYS][TIMES];
    memset(have, 0, sizeof have);
    int64_t used = 0;
    sp_store s;
    const char *err;
    sp_kv_part *p = logged_store(&s, &used);
    SP_CHECK_INT(sp_kv_set_ranged(&s), 0);
    uint32_t rnd = 777;
    int bad = 0;
    for (int op = 0; op < OPS; op++) {
        next_random(&rnd);
        int k = (int)((rnd >> 8) % KEYS), t = (int)((rnd >> 16) % TIMES), v = op + 1;
        char key[32], val[16];
        int klen = wkey_of(key, k, t);
        if ((rnd >> 4) % 3 == 0) {
            SP_CHECK_INT(sp_kv_delete(&s, p, key, (size_t)klen, &err), 0);
            have[k][t] = 0;
        } else {
            int vlen = snprintf(val, sizeof val, "%d", v);
            SP_CHECK_INT(sp_kv_put(&s, p, key, (size_t)klen, val, (size_t)vlen, op, &err), 0);
            have[k][t] = v;
        }
        /* the store's own entries beside the runs */
        if (op % 100 == 0) sp_kv_put(&s, p, S("\377s"), S("x"), op, &err);
        if (op % 3000 == 0) sp_kv_clean(&s, p);
        if (op % 7919 == 0) { /* a scan across runs between writes */
            sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0);
            bad += n == NULL;
        }
    }
    int64_t live = 1;
    for (int k = 0; k < KEYS; k++)
        for (int t = 0; t < TIMES; t++) {
            char key[32], val[16];
            int klen = wkey_of(key, k, t);
            sp_kv_node *n = sp_kv_get(p, key, (size_t)klen);
            int vlen = snprintf(val, sizeof val, "%d", have[k][t]);
            if (have[k][t] ? !(n && n->vlen == (uint32_t)vlen &&
                               memcmp(n->val, val, (size_t)vlen) == 0)
                           : n != NULL)
                bad++;
            live += have[k][t] != 0;
        }
    SP_CHECK_INT(bad, 0);
    /* a key's time ranges, as a join reads them */
    for (int q = 0; q < 400; q++) {
        next_random(&rnd);
        int k = (int)((rnd >> 8) % KEYS), lo = (int)((rnd >> 16) % TIMES);
        int hi = lo + (int)((rnd >> 24) % 12), want = 0, got = 0;
        for (int t = lo; t <= hi && t < TIMES; t++) want += have[k][t] != 0;
        char from[32];
        int flen = wkey_of(from, k, lo);
        size_t plen = (size_t)flen - 8;
        for (sp_kv_node *n = sp_kv_seek_in(p, from, (size_t)flen, plen, 0); n;
             n = sp_kv_seek_in(p, n->key, n->klen, plen, 1)) {
            int t = (unsigned char)n->key[n->klen - 2] << 8 | (unsigned char)n->key[n->klen - 1];
            if (t > hi) break;
            bad += !(t >= lo && have[k][t]);
            got++;
        }
        bad += got != want;
    }
    SP_CHECK_INT(bad, 0);
    /* across runs, in byte order */
    int64_t scanned = 0;
    sp_kv_node *prev = NULL;
    for (sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0); n; n = sp_kv_seek(p, n->key, n->klen, 1)) {
        if (prev) {
            size_t m = prev->klen < n->klen ? prev->klen : n->klen;
            int c = memcmp(prev->key, n->key, m);
            bad += c > 0 || (c == 0 && prev->klen >= n->klen);
        }
        prev = n;
        scanned++;
    }
    SP_CHECK_INT(bad, 0);
    SP_CHECK_INT(scanned, live);
    SP_CHECK_INT(p->count, live);
    /* entries last written before the last 2,000 writes expire */
    sp_kv_clean(&s, p);
    int64_t gone = sp_kv_expire(&s, p, OPS - 2000), left = 0;
    for (sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0); n; n = sp_kv_seek(p, n->key, n->klen, 1)) {
        bad += n->ts <= OPS - 2000;
        left++;
    }
    SP_CHECK(gone > 0);
    SP_CHECK_INT(left + gone, live);
    SP_CHECK_INT(bad, 0);
    sp_kv_clean(&s, p);
    sp_kv_clear(&s, p);
    SP_CHECK(sp_kv_seek(p, NULL, 0, 0) == NULL);
    SP_CHECK_INT(used, 0);
    sp_kv_destroy(&s);
}

int main(void) {
    lookups_agree_with_scans(0);
    lookups_agree_with_scans(1);
    runs_agree_with_what_was_written();
    expiry();
    expiry_oldest_first();
    expiry_without_tombstones();
    ordered_scans();
    order_of_shared_prefixes();
    dirty_lists_and_tombstones();
    memory_budget();
    return sp_test_summary();
}
