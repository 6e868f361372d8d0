/* sp_restore: brings a store partition back from its changelog topic when
 * the input partition is assigned to this process. A consumer of its own
 * (no group) reads the changelog partitions; the runner pauses an input
 * partition while its state restores, so other partitions go on. */
#ifndef SP_RESTORE_H
#define SP_RESTORE_H

#include <librdkafka/rdkafka.h>

#include "sp_ctx.h"

typedef struct sp_restore sp_restore;

/* conf: the restore consumer's settings (bootstrap servers and the user's
 * consumer settings); taken over. state_dir: where local checkpoints live
 * (NULL: none). NULL and a message in errbuf on failure. */
sp_restore *sp_restore_create(sp_ctx *ctx, const char *app_id,
                              const char *state_dir, rd_kafka_conf_t *conf,
                              char *errbuf, size_t errsize);
void sp_restore_destroy(sp_restore *rs);

/* Creates missing changelog topics (compacted, partitions partitions);
 * 0, or -1 after logging why. */
int sp_restore_ensure_topics(sp_restore *rs, int32_t partitions);

/* Takes in the stores a reloaded script added (their changelog topics);
 * 0, or -1 when out of memory. */
int sp_restore_refresh(sp_restore *rs, const char *app_id);

/* The changelog topic of store i of the context (a table's: its topic). */
const char *sp_restore_topic(sp_restore *rs, int32_t store);
/* Where a table's partition is restored to: the group's committed offset
 * of its topic (-1: none, nothing to restore; -2: a topic not assigned
 * here); the runner answers. A store's changelog record whose header
 * SP_CHANGELOG_POSITIONS ("<offset> <topic>\n" per input of its partition
 * number: where those inputs were when it was written) names an input
 * offset past the committed one is skipped: it holds the effect of input
 * that will be processed again (at-least-once after a crash). */
#define SP_CHANGELOG_POSITIONS "sproc.pos"
typedef int64_t (*sp_restore_committed_fn)(void *opaque, const char *topic, int32_t partition);
/* The text of SP_CHANGELOG_POSITIONS for partition now, into out (reset
 * first): kept with a local checkpoint, which the restore compares with
 * the committed offsets as it does a changelog record's. */
typedef void (*sp_restore_positions_fn)(void *opaque, int32_t partition, sp_buf *out);
/* exactly_once: offsets commit in the transaction that writes the
 * changelog, so a committed changelog record never names input past the
 * committed offsets; one that does says the offsets read were stale (a
 * group coordinator not yet caught up after a failover): the record is not
 * applied and sp_restore_take_stale names its partition. */
void sp_restore_set_committed(sp_restore *rs, sp_restore_committed_fn fn,
                              sp_restore_positions_fn positions, void *opaque, int exactly_once);
/* A partition whose restore met such a record (its committed offsets must
 * be read again and its restore started over), or -1; each is given
 * once. */
int32_t sp_restore_take_stale(sp_restore *rs);
int sp_restore_is_stale(const sp_restore *rs, int32_t partition);

/* Starts restoring every store's partition (a no-op for a partition being
 * restored or already here). Returns 1 when restoring started, 0 when
 * there was nothing to read, -1 on error. */
int sp_restore_start(sp_restore *rs, int32_t partition);
/* Applies what the changelogs have for restoring partitions. Fills done
 * with partitions whose restore finished (up to max) and returns how
 * many, or -1 on a fatal error (message in *err). */
int sp_restore_poll(sp_restore *rs, int32_t *done, int max, const char **err);
/* Partitions still restoring. */
int sp_restore_pending(const sp_restore *rs);
int sp_restore_is_restoring(const sp_restore *rs, int32_t partition);
/* Saves the partition's stores as local checkpoints (after its changelog
 * writes are acknowledged: a clean hand-over); 0, or -1 after a warning. */
int sp_restore_checkpoint(sp_restore *rs, int32_t partition);
/* The partition went elsewhere: stop restoring it and forget its state. */
void sp_restore_drop(sp_restore *rs, int32_t partition);

#endif
