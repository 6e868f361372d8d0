/* sp_store: state stores. A store is named by the user and split by input
 * partition, so that state can follow its partition to another process.
 * Key-value stores keep keys in order (a red-black tree from libbsd), for
 * range and prefix scans, and hashed (sp_kv_index.h) for lookups; values
 * are bytes the Lua API tags with their type.
 * Every change marks its entry dirty, so a batch's changes can go to the
 * store's changelog once per key. */
#ifndef SP_KV_H
#define SP_KV_H

/* the BSD macros mark generated functions __unused, which glibc lacks */
#ifndef __unused
#define __unused __attribute__((unused))
#endif
#include <bsd/sys/tree.h>
#include <stddef.h>
#include <stdint.h>

#include "sp_kv_index.h"

typedef struct sp_kv_node {
    union {
        RB_ENTRY(sp_kv_node) rb; /* in the tree */
        struct {
            struct sp_kv_node *next; /* NULL: the last */
            struct sp_kv_node *prev; /* the first's: the last */
        } run; /* a ranged partition's window key: in its key's run */
    };
    char *val;     /* NULL: deleted, a tombstone waiting for the changelog */
    uint32_t vlen;
    uint32_t klen;
    int64_t ts;    /* stream time of the last write (TTL, changelog) */
    uint32_t didx; /* its place in the partition's dirty list */
    uint8_t dirty;
    uint8_t logged; /* the changelog has a value of this key: a delete
                     * needs a tombstone there (a key put and deleted
                     * between two flushes needs nothing) */
    uint8_t aged;   /* in its partition's age list (sp_store.aged) */
    uint8_t hashed; /* in its partition's index (not a ranged store's
                     * window key), under hash */
    uint8_t in_run; /* a ranged partition's window key, in a run (its
                     * hash is its key part's) */
    uint32_t hash;
    struct sp_kv_node *older, *newer;
    char key[];
} sp_kv_node;

RB_HEAD(sp_kv_tree, sp_kv_node);

typedef struct sp_kv_part {
    int32_t partition;
    struct sp_kv_tree tree;
    sp_kv_index index;   /* the tree's nodes by key */
    int ranged;          /* its store's: its window keys (2-byte length,
                          * key, then time and more) are not in the tree
                          * but in runs, one per key part, in key order;
                          * runs holds each run's first node */
    sp_kv_index runs;
    sp_kv_node **order;  /* a ranged partition's nodes in key order, for a
                          * scan across runs: made when a scan asks, let go
                          * at the next change; NULL none */
    size_t norder;
    int64_t count;       /* live keys */
    sp_kv_node **dirty;  /* changed since the last changelog flush */
    size_t ndirty, dirty_cap;
    /* for each input topic-partition whose records changed the partition
     * since the last flush, the oldest such input segment, held (a
     * reference) until the changelog writes take it over: no offset of
     * it or after it is committed before the changes are in Kafka */
    void *segs[4];
    int nsegs;
    int64_t changelog_end; /* offset after the last changelog record the
                            * state holds (restored or acknowledged); -1
                            * unknown */
    sp_kv_node *last;      /* the node found last: reads are often followed
                            * by a write of the same key */
    sp_kv_node *cursor;    /* the node a seek gave last: a scan's next seek
                            * starts from its key */
    int64_t swept_ms;      /* stream time of the last TTL sweep; -1 none */
    int64_t restored_ms;   /* a retention store's newest record time seen
                            * by its restore; -1 none */
    sp_kv_node *oldest, *newest; /* the age list of an aged store */
} sp_kv_part;

struct sp_lmdb;

typedef struct sp_store {
    char *name;
    int kind;
    int disk;            /* entries in LMDB (sp_lmdb.h); the tree of each
                          * partition then only lists the batch's changed
                          * keys for the changelog */
    struct sp_lmdb *lmdb; /* opened on first use */
    int track;           /* keep dirty lists (a changelog is written) */
    int sink;            /* the changelog's sink id in its context; -1 none */
    sp_kv_part *parts;
    int32_t nparts;
    int64_t bytes;       /* keys, values and node overhead */
    int64_t *budget_used; /* shared by the stores of a context */
    int64_t budget;       /* bytes; 0: none */
    int64_t ttl;          /* ms of stream time an entry lives after its
                           * last write; 0: forever */
    uint64_t tasks;       /* tasks whose records wrote it: its TTL runs on
                           * their stream time (0: none yet) */
    char *source;         /* a table's: the topic it holds the latest value
                           * per key of, which is its changelog; NULL none */
    int source_tag;       /* the SP_VAL_* its values are stored with */
    int global;           /* every partition of source in partition 0, on
                           * every process: never dropped nor restored */
    int aged;             /* entries with a value are also listed in the
                           * order they were last written, so that expiry
                           * takes the oldest first (sp_kv_expire_oldest) */
    int ranged;           /* window keys are read by a key's time range
                           * only: they live in runs (sp_kv_part.ranged) */
    int64_t retention;    /* a join side's (sp_store_set_retention): ms of
                           * record time its records are kept; expiry then
                           * leaves no tombstone. 0: none */
} sp_store;

/* Put failed because the memory budget is exhausted. */
#define SP_STORE_EFULL (-2)

int sp_kv_init(sp_store *s, const char *name, int kind, int64_t *budget_used,
                  int64_t budget);
void sp_kv_destroy(sp_store *s);
sp_kv_part *sp_kv_part_of(sp_store *s, int32_t partition, int create);
/* Forgets a partition's state (its partition went to another process). */
void sp_kv_drop_part(sp_store *s, int32_t partition);

/* Returns the node of key, or NULL (deleted keys are NULL too). */
sp_kv_node *sp_kv_get(sp_kv_part *p, const char *key, size_t klen);
/* 0, or -1 with *err (out of memory), or SP_STORE_EFULL (over the
 * memory budget). */
int sp_kv_put(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
              const char *val, size_t vlen, int64_t ts, const char **err);
/* The value of key for a change in place: vlen bytes, zeroed for a new
 * entry (*created set then), the entry marked changed with time ts. NULL
 * and -1 in *created when out of memory, SP_STORE_EFULL over the budget. */
char *sp_kv_upsert(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
                   size_t vlen, int64_t ts, int *created);
/* The put or delete (val NULL) of a changelog record being restored: no
 * dirty mark, since the changelog has it already. */
int sp_kv_apply(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
                const char *val, size_t vlen, int64_t ts, const char **err);
/* Deletes (as changes for the changelog) the entries last written at or
 * before ts; returns how many. */
int64_t sp_kv_expire(sp_store *s, sp_kv_part *p, int64_t ts);
/* The same for an aged store, from its oldest write on: stops at the first
 * entry written after ts (one written out of time order holds back those
 * after it until its own time comes). */
int64_t sp_kv_expire_oldest(sp_store *s, sp_kv_part *p, int64_t ts);
/* Makes a store aged (its entries listed by write order too). */
void sp_kv_set_aged(sp_store *s);
/* Makes a store ranged (its window keys in runs): 0, or -1 out of
 * memory. */
int sp_kv_set_ranged(sp_store *s);
int sp_kv_delete(sp_store *s, sp_kv_part *p, const char *key, size_t klen,
                 const char **err);
/* The first live node with key >= from (> from when strict), or NULL. */
sp_kv_node *sp_kv_seek(sp_kv_part *p, const char *from, size_t flen, int strict);
/* The same among the keys that begin with from's first plen bytes: NULL
 * after the last. For a window key's time range, from a ranged
 * partition's run without a search across keys. */
sp_kv_node *sp_kv_seek_in(sp_kv_part *p, const char *from, size_t flen, size_t plen,
                          int strict);
/* Frees every node of a partition (a disk store's changed-key list). */
void sp_kv_clear(sp_store *s, sp_kv_part *p);
/* Forgets the dirty list after the changes went to the changelog, and
 * frees the tombstones. */
void sp_kv_clean(sp_store *s, sp_kv_part *p);
/* Lets go of the input segments the partition holds (segs). */
void sp_kv_release_segs(sp_kv_part *p);

#endif
