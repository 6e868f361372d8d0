/* sp_fcommit: exactly-once file output (Spark's file sink log). A
 * checkpoint directory holds one entry per published file naming the
 * input offsets its rows come from. An entry is written (and synced)
 * before its file is renamed into place, so every visible file is listed;
 * a restart finishes a rename a crash interrupted, and drops outputs of
 * input records that a listed file already holds: re-read records neither
 * vanish nor appear twice. */
#ifndef SP_FCOMMIT_H
#define SP_FCOMMIT_H

#include <stdint.h>

typedef struct sp_fcommit sp_fcommit;

/* Opens (creating) the checkpoint of the files in out_dir: finishes
 * interrupted publications and reads what the entries cover. */
sp_fcommit *sp_fcommit_open(const char *checkpoint_dir, const char *out_dir,
                            const char **err);
void sp_fcommit_destroy(sp_fcommit *c);
/* Reads the entries again (after a rebalance: another process may have
 * published files of the partitions this one now owns). */
int sp_fcommit_rescan(sp_fcommit *c, const char **err);
/* 1 when a published file already holds the outputs of that record. */
int sp_fcommit_published(sp_fcommit *c, const char *topic, int32_t partition,
                         int64_t offset);
/* Notes a record whose outputs go to the open file. */
int sp_fcommit_cover(sp_fcommit *c, const char *topic, int32_t partition,
                     int64_t offset);
/* Publishes the n synced files tmp_paths[i] as out_dir/names[i] (names
 * relative to out_dir: a partition directory's file is "a=1/part-..."),
 * holding rows rows together, under one entry named entry: the entry
 * first, then the renames. */
int sp_fcommit_publish(sp_fcommit *c, const char *entry, char *const *tmp_paths,
                       char *const *names, int n, int64_t rows, const char **err);
/* Forgets what the open file covered (it will not be published). */
void sp_fcommit_discard(sp_fcommit *c);

/* Shared with the plain file sink. */
int sp_mkdirs(const char *dir);
int sp_fsync_dir(const char *dir);
/* The pid in a name ".<prefix>-<ms>-<pid>-<seq><suffix>.inprogress" (or
 * without the dot and ".inprogress"), or -1. */
long sp_fcommit_name_pid(const char *name, const char *suffix);

#endif
