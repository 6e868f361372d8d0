#include "sp_checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_log.h"

/* File: the magic line, the changelog offset, the inputs' positions
 * (length, text), the entry count, the entries (key length, value
 * length, time, key, value), then the count again so that a truncated
 * file is recognized. Native byte order: a checkpoint is a cache for
 * this machine, the changelog is the truth. */
static const char MAGIC[] = "sproc-checkpoint 2\n";

static void path_of(char *buf, size_t n, const char *dir, const char *store,
                    int32_t partition, const char *suffix) {
    snprintf(buf, n, "%s/%s.%" PRId32 ".ckpt%s", dir, store, partition, suffix);
}

int sp_checkpoint_write(const char *dir, sp_store *s, sp_kv_part *p, const char *positions,
                        size_t positions_len, const char **err) {
    char tmp[4096], final[4096];
    path_of(tmp, sizeof tmp, dir, s->name, p->partition, ".tmp");
    path_of(final, sizeof final, dir, s->name, p->partition, "");
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    int64_t count = 0;
    for (sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0); n; n = sp_kv_seek(p, n->key, n->klen, 1))
        count++;
    uint32_t plen = (uint32_t)positions_len;
    ok = ok && fwrite(MAGIC, 1, sizeof MAGIC - 1, f) == sizeof MAGIC - 1 &&
         fwrite(&p->changelog_end, sizeof p->changelog_end, 1, f) == 1 &&
         fwrite(&plen, sizeof plen, 1, f) == 1 &&
         (plen == 0 || fwrite(positions, 1, plen, f) == plen) &&
         fwrite(&count, sizeof count, 1, f) == 1;
    for (sp_kv_node *n = sp_kv_seek(p, NULL, 0, 0); ok && n;
         n = sp_kv_seek(p, n->key, n->klen, 1)) {
        ok = fwrite(&n->klen, sizeof n->klen, 1, f) == 1 &&
             fwrite(&n->vlen, sizeof n->vlen, 1, f) == 1 &&
             fwrite(&n->ts, sizeof n->ts, 1, f) == 1 &&
             fwrite(n->key, 1, n->klen, f) == n->klen &&
             fwrite(n->val, 1, n->vlen, f) == n->vlen;
    }
    ok = ok && fwrite(&count, sizeof count, 1, f) == 1 && fflush(f) == 0 &&
         fsync(fileno(f)) == 0;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, final) != 0) ok = 0;
    if (!ok) {
        *err = strerror(errno);
        unlink(tmp);
        return -1;
    }
    return 0;
}

void sp_checkpoint_remove(const char *dir, const sp_store *s, int32_t partition) {
    char path[4096];
    path_of(path, sizeof path, dir, s->name, partition, "");
    unlink(path);
}

int sp_checkpoint_load(const char *dir, sp_store *s, sp_kv_part *p,
                       int64_t *offset, int64_t *keys, sp_buf *positions) {
    char path[4096], magic[sizeof MAGIC];
    path_of(path, sizeof path, dir, s->name, p->partition, "");
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int64_t count = 0, trailer = -1, i = 0;
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    const char *err = "truncated, corrupt or of an older format";
    uint32_t plen = 0;
    sp_buf_reset(positions);
    if (fread(magic, 1, sizeof MAGIC - 1, f) != sizeof MAGIC - 1 ||
        memcmp(magic, MAGIC, sizeof MAGIC - 1) != 0 ||
        fread(offset, sizeof *offset, 1, f) != 1 || fread(&plen, sizeof plen, 1, f) != 1 ||
        plen > 1 << 20 || sp_buf_reserve(positions, plen) != 0 ||
        (plen && fread(positions->data, 1, plen, f) != plen) ||
        fread(&count, sizeof count, 1, f) != 1)
        goto bad;
    positions->len = plen;
    for (; i < count; i++) {
        uint32_t kl, vl;
        int64_t ts;
        if (fread(&kl, sizeof kl, 1, f) != 1 || fread(&vl, sizeof vl, 1, f) != 1 ||
            fread(&ts, sizeof ts, 1, f) != 1)
            goto bad;
        size_t need = (size_t)kl + vl + 1;
        if (need > cap) {
            char *nb = realloc(buf, need);
            if (!nb) goto bad;
            buf = nb;
            cap = need;
        }
        if (fread(buf, 1, (size_t)kl + vl, f) != (size_t)kl + vl) goto bad;
        if (sp_kv_apply(s, p, buf, kl, buf + kl, vl, ts, &err) != 0) {
            rc = -1;
            goto done;
        }
    }
    if (fread(&trailer, sizeof trailer, 1, f) != 1 || trailer != count) goto bad;
    *keys = count;
    rc = 1;
    goto done;
bad:
    sp_warn("ignoring checkpoint %s: %s", path, err);
    /* what was loaded of it goes: the changelog restores all */
    sp_kv_drop_part(s, p->partition);
    unlink(path);
    rc = 0;
done:
    free(buf);
    fclose(f);
    return rc;
}
