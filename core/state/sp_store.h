/* The stores of a context, for the layers above (the FFI functions that
 * scripts call are in sp_ffi.h): their making and unmaking, where disk
 * stores live, and the operations that the engine, windows and restores
 * use. */
#ifndef SP_STORE_H
#define SP_STORE_H

#include "sp_ctx.h"
#include "sp_kv.h"

void sp_store_destroy_all(sp_ctx *ctx);
/* A partition's state in every store goes (disk stores' too). */
void sp_store_drop_partition(sp_ctx *ctx, int32_t partition);
/* Where disk stores live (the executable sets it before the first
 * record). */
int sp_store_set_dir(sp_ctx *ctx, const char *dir);
/* Backend-neutral store operations for the core's own callers: expiry
 * (timers), restored changelog records, and a disk store's LMDB. */
int64_t sp_store_expire(sp_ctx *ctx, sp_store *s, int32_t partition, int64_t ts);
/* Expiry on a clock of the caller's (a join side's latest record time):
 * entries of store's partition (-1: the current record's) with a time <=
 * ts go, once ts moved on by every since the partition's last such sweep
 * (a full scan, but for an aged store's oldest-first walk). */
int64_t sp_store_sweep(sp_ctx *ctx, int store, int32_t partition, int64_t ts, int64_t every);
/* An in-memory store's entries also listed by write order: a sweep then
 * takes the oldest first instead of scanning them all. */
int sp_store_set_aged(sp_ctx *ctx, int store, const char **err);
/* A store whose window keys (sproc.store's layout: 2-byte length, key,
 * time and more) are read by a key's time range only (sp_store_next_in):
 * in memory, each key's records are a run of their own, outside the tree
 * (sp_kv.h). */
int sp_store_set_ranged(sp_ctx *ctx, int store, const char **err);
/* A join side's store (sp_jstore.c): its records are kept retention_ms
 * of its own record time. Their expiry leaves no tombstone (its changelog
 * deletes by time, a day past the retention: Kafka Streams' window store
 * changelogs), and a restore skips what the retention dropped. */
int sp_store_set_retention(sp_ctx *ctx, int store, int64_t retention_ms, const char **err);
/* sp_store_next among the keys that begin with from's first plen bytes
 * (0: all): 0 after the last. */
int sp_store_next_in(sp_ctx *ctx, int store, int32_t partition, const char *from,
                     size_t flen, size_t plen, int strict, const char **key, size_t *klen,
                     const char **val, size_t *vlen);
/* The record time in a window key (2-byte length, key, 8-byte time, and
 * more), or -1 when key is not one (a join side's own entries). */
int64_t sp_store_window_time(const char *key, size_t klen);
int sp_store_restore_apply(sp_ctx *ctx, sp_store *s, int32_t partition, const char *key,
                       size_t klen, const char *val, size_t vlen, int64_t ts,
                       const char **err);
struct sp_lmdb *sp_store_disk(sp_ctx *ctx, sp_store *s, const char **err);
/* The value bytes of key in an in-memory store for a change in place
 * (sp_kv_upsert): vlen bytes, zeroed and *created 1 for a new entry. NULL
 * with *created 0 when the store takes the general path (on disk, with a
 * TTL), -1 on error (*err). */
char *sp_store_upsert(sp_ctx *ctx, int store, int32_t partition, const char *key,
                          size_t klen, size_t vlen, int64_t ts, int *created,
                          const char **err);
/* sp_store_flush_changelogs (sp_ffi.h) writes the store changes since the
 * last flush to the changelogs (one write per changed key: a key changed
 * a thousand times in between goes once), each holding the input segments
 * of its partition until Kafka acknowledges it. The executable flushes
 * when it commits; disk stores, whose lists of changed keys take memory,
 * after every batch (this one). */
int sp_store_flush_disk_changelogs(sp_ctx *ctx, const char **err);

#endif
