/* Rolling files: outputs go to a hidden in-progress file that is fsynced
 * and renamed into place when it rolls (by size or age) or when the sink
 * is flushed, so no reader ever sees half a file. The input segments of
 * the records in the open file stay referenced until it is published:
 * their offsets are not committed before the file is in place. With a
 * checkpoint (sp_fcommit) publication is exactly-once. A file holds JSON
 * lines, or Parquet when the sink has a schema. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sp_ctx.h"
#include "sp_sink.h"
#include "sp_fcommit.h"
#include "sp_log.h"
#include "sp_pq.h"

typedef struct files {
    char *prefix, *suffix;
    int64_t roll_bytes, roll_ms;
    FILE *f;
    char *tmp_path, *final_path, *name;
    int64_t bytes, rows, opened_ms, seq, started_ms;
    sp_seg **segs; /* referenced by the open file */
    size_t nsegs, segs_cap;
    sp_schema *schema; /* Parquet files when set */
    char *spec;        /* the schema's spec, to notice a reload's change */
    sp_pq_opts pq;
    sp_pq_writer *pw;
    sp_fcommit *commit; /* exactly-once when set */
    const sp_rec *last_in;
    int64_t last_offset;
} files;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    fs->name = fs->final_path + strlen(s->name) + 1;
    fs->seq++;
    fs->f = fopen(fs->tmp_path, "w");
    if (!fs->f) {
        sp_error("cannot create %s: %s", fs->tmp_path, strerror(errno));
        *err = "cannot create output file";
        return SP_EIO;
    }
    if (fs->schema && !(fs->pw = sp_pq_create(fs->schema, &fs->pq, fs->f, err)))
        return SP_EIO;
    fs->bytes = 0;
    fs->rows = 0;
    fs->opened_ms = now_ms();
    return SP_OK;
}

static int publish(sp_sink *s, const char **err) {
    files *fs = s->impl;
    int rc = SP_OK;
    if (!fs->f) return SP_OK;
    if (fs->pw) {
        rc = sp_pq_finish(fs->pw, err) == 0 ? SP_OK : SP_EIO;
        sp_pq_destroy(fs->pw);
        fs->pw = NULL;
    }
    if (fflush(fs->f) != 0 || fsync(fileno(fs->f)) != 0) rc = SP_EIO;
    if (fclose(fs->f) != 0) rc = SP_EIO;
    fs->f = NULL;
    if (rc == SP_OK && fs->commit)
        rc = sp_fcommit_publish(fs->commit, fs->tmp_path, fs->name, fs->rows,
                                err) == 0 ? SP_OK : SP_EIO;
    else if (rc == SP_OK && rename(fs->tmp_path, fs->final_path) != 0)
        rc = SP_EIO;
    if (rc != SP_OK) {
        sp_error("cannot publish %s: %s", fs->final_path, strerror(errno));
        *err = "cannot publish output file";
        return rc;
    }
    sp_debug("published %s (%" PRId64 " rows, %" PRId64 " bytes)",
             fs->final_path, fs->rows, fs->bytes);
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
    const char *topic = m->in ? sp_topic_name(s->ctx, m->in->topic) : NULL;
    if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
    if (fs->commit && topic &&
        sp_fcommit_published(fs->commit, topic, m->in->partition, m->in->offset))
        return SP_OK; /* a re-read record: a published file has its rows */
    /* Convert first: a value that does not fit the schema fails alone. */
    if (fs->schema &&
        sp_schema_convert(fs->schema, m->val, m->val ? m->val_len : 0, NULL,
                          err) != 0)
        return SP_EMALFORMED;
    /* Roll by size between input records only, so that all outputs of a
     * record land in one file (the checkpoint lists whole records). */
    int same_record = m->in && m->in == fs->last_in &&
                      m->in->offset == fs->last_offset;
    if (fs->f && !same_record && fs->roll_bytes > 0 &&
        (fs->pw ? sp_pq_size(fs->pw) : fs->bytes) >= fs->roll_bytes &&
        (rc = publish(s, err)) != SP_OK)
        return rc;
    if (!fs->f && (rc = open_file(s, err)) != SP_OK) return rc;
    if (m->seg && hold_seg(fs, m->seg) != SP_OK) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    if (fs->commit && topic &&
        sp_fcommit_cover(fs->commit, topic, m->in->partition, m->in->offset) != 0) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    fs->last_in = m->in;
    fs->last_offset = m->in ? m->in->offset : -1;
    if (fs->pw) {
        if (sp_pq_append(fs->pw, err) != 0) return SP_EIO;
    } else if ((m->val_len && fwrite(m->val, 1, m->val_len, fs->f) != m->val_len) ||
               fputc('\n', fs->f) == EOF) {
        *err = "cannot write output file";
        return SP_EIO;
    }
    fs->bytes += (int64_t)m->val_len + 1;
    fs->rows++;
    return rc;
}

static int files_flush(sp_sink *s, int force, const char **err) {
    files *fs = s->impl;
    if (!fs->f) return SP_OK;
    if (force || (fs->roll_ms > 0 && now_ms() - fs->opened_ms >= fs->roll_ms))
        return publish(s, err);
    return SP_OK;
}

static void files_assigned(sp_sink *s) {
    files *fs = s->impl;
    const char *err;
    if (fs->commit && sp_fcommit_rescan(fs->commit, &err) != 0)
        sp_error("%s: %s", s->name, err);
}

static void files_destroy(sp_sink *s) {
    files *fs = s->impl;
    if (!fs) return;
    /* An unpublished file stays hidden: its records were not committed and
     * will be read again; the next start removes it. */
    sp_pq_destroy(fs->pw);
    if (fs->f) fclose(fs->f);
    release_segs(fs);
    sp_fcommit_destroy(fs->commit);
    sp_schema_destroy(fs->schema);
    free(fs->spec);
    free(fs->segs);
    free(fs->tmp_path);
    free(fs->final_path);
    free(fs->prefix);
    free(fs->suffix);
    free(fs);
    s->impl = NULL;
}

int sp_sink_files_update(sp_sink *s, const sp_file_opts *o, const char **err) {
    files *fs = s->impl;
    sp_pq_opts pq = {o->codec, o->dictionary, o->row_group_bytes, o->row_group_rows, 0};
    int same_schema = (!o->schema && !fs->spec) ||
                      (o->schema && fs->spec && strcmp(o->schema, fs->spec) == 0);
    fs->roll_bytes = o->roll_bytes;
    fs->roll_ms = o->roll_ms;
    if (same_schema && memcmp(&pq, &fs->pq, sizeof pq) == 0) return SP_OK;
    sp_schema *schema = NULL;
    char *spec = NULL;
    if (o->schema && (!(schema = sp_schema_create(o->schema, err)) ||
                      !(spec = strdup(o->schema)))) {
        sp_schema_destroy(schema);
        return schema ? SP_ENOMEM : SP_EINVAL;
    }
    int rc = publish(s, err); /* the open file keeps the schema it began with */
    if (rc != SP_OK) {
        sp_schema_destroy(schema);
        free(spec);
        return rc;
    }
    char *suffix = strdup(o->suffix ? o->suffix : o->schema ? ".parquet" : ".jsonl");
    if (!suffix) {
        sp_schema_destroy(schema);
        free(spec);
        *err = "out of memory";
        return SP_ENOMEM;
    }
    sp_schema_destroy(fs->schema);
    free(fs->spec);
    free(fs->suffix);
    fs->schema = schema;
    fs->spec = spec;
    fs->suffix = suffix;
    fs->pq = pq;
    return SP_OK;
}

/* In-progress files of processes that are gone: never published, their
 * records read again. */
static void remove_abandoned(const char *dir, const char *prefix,
                             const char *suffix) {
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t pl = strlen(prefix);
    if (!d) return;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        size_t n = strlen(nm);
        if (nm[0] != '.' || strncmp(nm + 1, prefix, pl) != 0 || nm[1 + pl] != '-' ||
            n < 12 || strcmp(nm + n - 11, ".inprogress") != 0)
            continue;
        long pid = sp_fcommit_name_pid(nm, suffix);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 ||
            errno == EPERM)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        if (unlink(path) == 0) sp_debug("removed abandoned %s", path);
    }
    closedir(d);
}

static const sp_sink_ops files_ops = {"files", files_write, files_flush,
                                      files_destroy, files_assigned};

int sp_sink_files_open(sp_sink *s, const sp_file_opts *o, const char **err) {
    files *fs = calloc(1, sizeof *fs);
    if (!fs) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    s->ops = &files_ops;
    s->impl = fs;
    if (o->schema && (!(fs->schema = sp_schema_create(o->schema, err)) ||
                      !(fs->spec = strdup(o->schema))))
        return fs->schema ? SP_ENOMEM : SP_EINVAL;
    if (o->codec != SP_CODEC_NONE && o->codec != SP_CODEC_SNAPPY &&
        o->codec != SP_CODEC_ZSTD) {
        *err = "unknown Parquet compression (none, snappy or zstd)";
        return SP_EINVAL;
    }
    fs->prefix = strdup(o->prefix ? o->prefix : "part");
    fs->suffix = strdup(o->suffix ? o->suffix : o->schema ? ".parquet" : ".jsonl");
    if (!fs->prefix || !fs->suffix) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    fs->roll_bytes = o->roll_bytes;
    fs->roll_ms = o->roll_ms;
    fs->pq = (sp_pq_opts){o->codec, o->dictionary, o->row_group_bytes,
                          o->row_group_rows, 0};
    fs->started_ms = now_ms();
    if (sp_mkdirs(s->name) != 0) {
        sp_error("cannot create directory %s: %s", s->name, strerror(errno));
        *err = "cannot create output directory";
        return SP_EIO;
    }
    /* finish interrupted publications before removing what is abandoned */
    if (o->checkpoint && *o->checkpoint &&
        !(fs->commit = sp_fcommit_open(o->checkpoint, s->name, err)))
        return SP_EIO;
    remove_abandoned(s->name, fs->prefix, fs->suffix);
    return SP_OK;
}
