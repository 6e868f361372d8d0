/* A key-value store partition's hash index: exact-key lookups in one probe
 * instead of a search down its tree, whose nodes are cache misses (a
 * 100,000-key table is 17 levels deep). The tree stays for ordered scans
 * and holds every node but a ranged store's window keys, which are in
 * runs (sp_kv.h); the index holds the tree's nodes, and another one the
 * runs' first nodes. */
#ifndef SP_KV_INDEX_H
#define SP_KV_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct sp_kv_node;

/* A slot keeps its node's hash beside it, so that a probe reads no node
 * but the one it is after (a miss, a join's lookup of a key the table
 * lacks, reads none). */
typedef struct sp_kv_slot {
    struct sp_kv_node *node; /* NULL: empty */
    uint32_t hash;
} sp_kv_slot;

typedef struct sp_kv_index {
    sp_kv_slot *slots; /* open addressing, linear probing */
    uint32_t mask;     /* slots - 1; 0 before the first add */
    uint32_t used;
} sp_kv_index;

uint32_t sp_kv_index_hash(const char *key, size_t klen);
/* The node of key (whose hash is h), or NULL. */
struct sp_kv_node *sp_kv_index_find(const sp_kv_index *ix, const char *key, size_t klen,
                                    uint32_t h);
/* The node whose key begins with the plen bytes of prefix (whose hash is
 * h), or NULL: for an index of nodes that each have a prefix of their own
 * (a ranged partition's runs). */
struct sp_kv_node *sp_kv_index_find_prefix(const sp_kv_index *ix, const char *prefix,
                                           size_t plen, uint32_t h);
/* Adds n (its hash set, its key not there yet): 0, or -1 out of memory. */
int sp_kv_index_add(sp_kv_index *ix, struct sp_kv_node *n);
void sp_kv_index_remove(sp_kv_index *ix, const struct sp_kv_node *n);
/* The slot n is in (n in the index). */
uint32_t sp_kv_index_slot(const sp_kv_index *ix, const struct sp_kv_node *n);
/* Puts by in old's place (by's hash is old's). */
void sp_kv_index_replace(sp_kv_index *ix, const struct sp_kv_node *old, struct sp_kv_node *by);
void sp_kv_index_destroy(sp_kv_index *ix);

#endif
