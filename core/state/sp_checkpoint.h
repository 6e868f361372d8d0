/* sp_checkpoint: a store partition saved to a local file with the
 * changelog offset its state reaches, so that a restart on the same
 * machine replays only the changelog's tail. Written when a partition is
 * handed over cleanly (revoke, shutdown), after its changelog writes are
 * acknowledged; a checkpoint never claims more than the changelog holds,
 * so an old one is only slower, not wrong. */
#ifndef SP_CHECKPOINT_H
#define SP_CHECKPOINT_H

#include <stdint.h>

#include "sp_buf.h"
#include "sp_kv.h"

/* positions: where the partition's inputs were when the state was taken
 * (the changelog header's text, "<offset> <topic>\n" per input), kept
 * so that a checkpoint ahead of the group's committed offsets is told
 * apart. 0, or -1 with *err. Writes a temporary file and renames it. */
int sp_checkpoint_write(const char *dir, sp_store *s, sp_kv_part *p, const char *positions,
                        size_t positions_len, const char **err);
/* Loads the checkpoint of s's partition p into p (which should be empty):
 * 1 and *offset (and its positions into positions) when there was one, 0
 * when none (or unreadable, or of an older format: it is then removed
 * and a warning logged), -1 when the state does not fit. */
int sp_checkpoint_load(const char *dir, sp_store *s, sp_kv_part *p,
                       int64_t *offset, int64_t *keys, sp_buf *positions);
void sp_checkpoint_remove(const char *dir, const sp_store *s, int32_t partition);

#endif
