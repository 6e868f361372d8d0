/* Rolling files: outputs go to a hidden in-progress file that is fsynced
 * and renamed into place when it rolls (by size or age) or when the sink
 * is flushed, so no reader ever sees half a file. The input segments of
 * the records in the open file stay referenced until it is published:
 * their offsets are not committed before the file is in place. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sp_ctx.h"
#include "sp_log.h"

typedef struct files {
    char *prefix, *suffix;
    int64_t roll_bytes, roll_ms;
    FILE *f;
    char *tmp_path, *final_path;
    int64_t bytes, opened_ms, seq, started_ms;
    sp_seg **segs; /* referenced by the open file */
    size_t nsegs, segs_cap;
} files;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mkdirs(const char *dir) {
    char path[4096];
    size_t n = strlen(dir);
    if (n >= sizeof path) return -1;
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) return -1;
        path[i] = c;
    }
    return 0;
}

static void release_segs(files *fs) {
    for (size_t i = 0; i < fs->nsegs; i++) sp_seg_unref(fs->segs[i]);
    fs->nsegs = 0;
}

static int open_file(sp_sink *s, const char **err) {
    files *fs = s->impl;
    size_t n = strlen(s->name) + strlen(fs->prefix) + strlen(fs->suffix) + 96;
    free(fs->tmp_path);
    free(fs->final_path);
    fs->tmp_path = malloc(n);
    fs->final_path = malloc(n);
    if (!fs->tmp_path || !fs->final_path) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    /* The start time and pid keep names unique across restarts and across
     * processes writing to one directory. */
    snprintf(fs->final_path, n, "%s/%s-%" PRId64 "-%ld-%05" PRId64 "%s",
             s->name, fs->prefix, fs->started_ms, (long)getpid(), fs->seq,
             fs->suffix);
    snprintf(fs->tmp_path, n, "%s/.%s-%" PRId64 "-%ld-%05" PRId64 "%s.inprogress",
             s->name, fs->prefix, fs->started_ms, (long)getpid(), fs->seq,
             fs->suffix);
    fs->seq++;
    fs->f = fopen(fs->tmp_path, "w");
    if (!fs->f) {
        sp_error("cannot create %s: %s", fs->tmp_path, strerror(errno));
        *err = "cannot create output file";
        return SP_EIO;
    }
    fs->bytes = 0;
    fs->opened_ms = now_ms();
    return SP_OK;
}

static int publish(sp_sink *s, const char **err) {
    files *fs = s->impl;
    int rc = SP_OK;
    if (!fs->f) return SP_OK;
    if (fflush(fs->f) != 0 || fsync(fileno(fs->f)) != 0) rc = SP_EIO;
    if (fclose(fs->f) != 0) rc = SP_EIO;
    fs->f = NULL;
    if (rc == SP_OK && rename(fs->tmp_path, fs->final_path) != 0) rc = SP_EIO;
    if (rc != SP_OK) {
        sp_error("cannot publish %s: %s", fs->final_path, strerror(errno));
        *err = "cannot publish output file";
        return rc;
    }
    sp_debug("published %s (%" PRId64 " bytes)", fs->final_path, fs->bytes);
    release_segs(fs);
    return SP_OK;
}

static int hold_seg(files *fs, sp_seg *seg) {
    if (fs->nsegs && fs->segs[fs->nsegs - 1] == seg) return SP_OK;
    for (size_t i = 0; i < fs->nsegs; i++)
        if (fs->segs[i] == seg) return SP_OK;
    if (fs->nsegs == fs->segs_cap) {
        size_t cap = fs->segs_cap ? fs->segs_cap * 2 : 16;
        sp_seg **t = realloc(fs->segs, cap * sizeof *t);
        if (!t) return SP_ENOMEM;
        fs->segs = t;
        fs->segs_cap = cap;
    }
    sp_seg_ref(seg);
    fs->segs[fs->nsegs++] = seg;
    return SP_OK;
}

static int files_write(sp_sink *s, sp_msg *m, const char **err) {
    files *fs = s->impl;
    int rc = SP_OK;
    if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
    if (!fs->f && (rc = open_file(s, err)) != SP_OK) return rc;
    if (m->seg && hold_seg(fs, m->seg) != SP_OK) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    if ((m->val_len && fwrite(m->val, 1, m->val_len, fs->f) != m->val_len) ||
        fputc('\n', fs->f) == EOF) {
        *err = "cannot write output file";
        return SP_EIO;
    }
    fs->bytes += (int64_t)m->val_len + 1;
    if (fs->roll_bytes > 0 && fs->bytes >= fs->roll_bytes)
        rc = publish(s, err);
    return rc;
}

static int files_flush(sp_sink *s, int force, const char **err) {
    files *fs = s->impl;
    if (!fs->f) return SP_OK;
    if (force || (fs->roll_ms > 0 && now_ms() - fs->opened_ms >= fs->roll_ms))
        return publish(s, err);
    return SP_OK;
}

static void files_destroy(sp_sink *s) {
    files *fs = s->impl;
    if (!fs) return;
    /* An unpublished file stays hidden: its records were not committed and
     * will be read again. */
    if (fs->f) fclose(fs->f);
    release_segs(fs);
    free(fs->segs);
    free(fs->tmp_path);
    free(fs->final_path);
    free(fs->prefix);
    free(fs->suffix);
    free(fs);
    s->impl = NULL;
}

static const sp_sink_ops files_ops = {"files", files_write, files_flush,
                                      files_destroy};

int sp_sink_files_open(sp_sink *s, const char *prefix, const char *suffix,
                       int64_t roll_bytes, int64_t roll_ms, const char **err) {
    files *fs = calloc(1, sizeof *fs);
    if (!fs) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    s->ops = &files_ops;
    s->impl = fs;
    fs->prefix = strdup(prefix);
    fs->suffix = strdup(suffix);
    if (!fs->prefix || !fs->suffix) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    fs->roll_bytes = roll_bytes;
    fs->roll_ms = roll_ms;
    fs->started_ms = now_ms();
    if (mkdirs(s->name) != 0) {
        sp_error("cannot create directory %s: %s", s->name, strerror(errno));
        *err = "cannot create output directory";
        return SP_EIO;
    }
    return SP_OK;
}
