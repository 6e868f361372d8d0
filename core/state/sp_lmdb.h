/* sp_lmdb: the disk-backed key-value store, on LMDB. One environment per
 * store under the state directory, one database per partition, keys in
 * the same byte order as the in-memory store. Each value is stored as the
 * 8-byte time of its last write followed by the tagged bytes the Lua API
 * gives. A write transaction spans a batch and commits at its end.
 *
 * LMDB is a cache of the changelog here: it is written without fsync, and
 * a partition's database is trusted at assignment only when a clean
 * hand-over recorded the changelog offset it reaches; otherwise it is
 * emptied and restored from the changelog. */
#ifndef SP_LMDB_H
#define SP_LMDB_H

#include <stddef.h>
#include <stdint.h>

#include "sp_buf.h"

typedef struct sp_lmdb sp_lmdb;

/* 0, or -1 with *err. dir is created if missing. */
int sp_lmdb_open(sp_lmdb **out, const char *dir, const char **err);
void sp_lmdb_close(sp_lmdb *l);

/* 1 and the value (valid until the next write or commit), 0 missing,
 * -1 error. */
int sp_lmdb_get(sp_lmdb *l, int32_t part, const char *key, size_t klen,
                const char **val, size_t *vlen, int64_t *ts, const char **err);
int sp_lmdb_put(sp_lmdb *l, int32_t part, const char *key, size_t klen,
                const char *val, size_t vlen, int64_t ts, const char **err);
/* 1 deleted, 0 was missing, -1 error */
int sp_lmdb_del(sp_lmdb *l, int32_t part, const char *key, size_t klen,
                const char **err);
/* The first key >= from (> when strict; from NULL: the first): 1 and the
 * entry, 0 at the end, -1 error. */
int sp_lmdb_seek(sp_lmdb *l, int32_t part, const char *from, size_t flen,
                 int strict, const char **key, size_t *klen, const char **val,
                 size_t *vlen, int64_t *ts, const char **err);
int64_t sp_lmdb_count(sp_lmdb *l, int32_t part);
/* Calls fn for every entry written at or before ts, after deleting it;
 * returns how many. */
int64_t sp_lmdb_expire(sp_lmdb *l, int32_t part, int64_t ts,
                       void (*fn)(void *arg, const char *key, size_t klen),
                       void *arg);
/* Empties a partition's database. */
int sp_lmdb_drop(sp_lmdb *l, int32_t part, const char **err);
/* The changelog offset recorded by a clean hand-over (-1: none), with
 * where the partition's inputs were then (text, as a checkpoint's, into
 * positions when not NULL); and recording or (offset -1) clearing them. */
int64_t sp_lmdb_offset(sp_lmdb *l, int32_t part, sp_buf *positions);
int sp_lmdb_set_offset(sp_lmdb *l, int32_t part, int64_t offset, const char *positions,
                       size_t positions_len, const char **err);
/* Partitions with a database: fills up to max, returns how many. */
int32_t sp_lmdb_partitions(sp_lmdb *l, int32_t *out, int32_t max);
/* Ends the batch: commits the write transaction. */
int sp_lmdb_commit(sp_lmdb *l, const char **err);

#endif
