/* Rolling files: outputs go to hidden in-progress files that are fsynced
 * and renamed into place when they roll (by size or age) or when the
 * sink is flushed, so no reader ever sees half a file. The input segments
 * of the records in the open files stay referenced until they are
 * published: their offsets are not committed before the files are in
 * place. With a checkpoint (sp_fcommit) publication is exactly-once. A
 * file holds JSON lines, or Parquet when the sink has a schema. With
 * partition columns (sp_hive) each partition directory has its own open
 * file; they roll and are published together, under one name. */
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
#include "sp_hive.h"
#include "sp_log.h"
#include "sp_pq.h"

/* Open partition files past which the open ones are published before
 * another opens (each buffers a row group). */
#define MAX_OPEN_FILES 64

typedef struct ofile {
    char *rel;        /* its partition directory, "" for none */
    char *tmp_path;   /* dir/rel/.name.inprogress */
    char *name;       /* rel/name, relative to the sink's directory */
    FILE *f;
    sp_pq_writer *pw;
    int64_t bytes, rows;
} ofile;

typedef struct files {
    char *prefix, *suffix;
    int64_t roll_bytes, roll_ms;
    ofile *open; /* the files of the coming publication */
    int nopen, open_cap, last;
    int64_t bytes, rows, opened_ms, seq, started_ms;
    sp_seg **segs; /* referenced by the open files */
    size_t nsegs, segs_cap;
    sp_schema *schema; /* Parquet files when set */
    char *spec;        /* the schema's spec, to notice a reload's change */
    char *parts_spec;  /* the partition columns, likewise */
    sp_hive *hive;     /* partition columns; NULL: none */
    sp_buf rel;
    sp_pq_opts pq;
    sp_fcommit *commit; /* exactly-once when set */
    /* a publication failed, or a record's outputs were written only in
     * part: the open files are never published (their records are read
     * again after a restart), whatever flushes them */
    int failed;
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

/* The publication's common name: the start time and pid keep names
 * unique across restarts and across processes writing to one
 * directory. */
static void base_name(const sp_sink *s, char *buf, size_t n) {
    const files *fs = s->impl;
    snprintf(buf, n, "%s-%" PRId64 "-%ld-%05" PRId64 "%s", fs->prefix, fs->started_ms,
             (long)getpid(), fs->seq, fs->suffix);
}

static void close_file(ofile *o) {
    sp_pq_destroy(o->pw);
    if (o->f) fclose(o->f);
    free(o->rel);
    free(o->tmp_path);
    free(o->name);
    memset(o, 0, sizeof *o);
}

/* Opens the file of partition directory rel (length len). */
static int open_file(sp_sink *s, const char *rel, size_t len, const char **err) {
    files *fs = s->impl;
    char base[1024];
    if (fs->nopen == fs->open_cap) {
        int cap = fs->open_cap ? fs->open_cap * 2 : 4;
        ofile *t = realloc(fs->open, (size_t)cap * sizeof *t);
        if (!t) goto oom;
        fs->open = t;
        fs->open_cap = cap;
    }
    ofile *o = &fs->open[fs->nopen];
    memset(o, 0, sizeof *o);
    base_name(s, base, sizeof base);
    size_t n = strlen(s->name) + len + strlen(base) + 32;
    if (!(o->rel = strndup(rel, len)) || !(o->tmp_path = malloc(n)) || !(o->name = malloc(n))) {
        close_file(o);
        goto oom;
    }
    snprintf(o->name, n, "%s%s%s", o->rel, len ? "/" : "", base);
    snprintf(o->tmp_path, n, "%s/%s%s.%s.inprogress", s->name, o->rel, len ? "/" : "", base);
    if (len) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", s->name, o->rel);
        if (sp_mkdirs(dir) != 0) {
            sp_error("cannot create directory %s: %s", dir, strerror(errno));
            close_file(o);
            *err = "cannot create output directory";
            return SP_EIO;
        }
    }
    if (!(o->f = fopen(o->tmp_path, "w"))) {
        sp_error("cannot create %s: %s", o->tmp_path, strerror(errno));
        close_file(o);
        *err = "cannot create output file";
        return SP_EIO;
    }
    if (fs->schema && !(o->pw = sp_pq_create(fs->schema, &fs->pq, o->f, err))) {
        close_file(o);
        return SP_EIO;
    }
    if (fs->nopen == 0) fs->opened_ms = now_ms();
    fs->last = fs->nopen++;
    return SP_OK;
oom:
    *err = "out of memory";
    return SP_ENOMEM;
}

/* Finishes, syncs and closes an open file; 0 or -1. */
static int seal(ofile *o, const char **err) {
    int rc = 0;
    if (!o->f) return -1; /* sealed by a publication that failed */
    if (o->pw) {
        rc = sp_pq_finish(o->pw, err);
        sp_pq_destroy(o->pw);
        o->pw = NULL;
    }
    if (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0) rc = -1;
    if (fclose(o->f) != 0) rc = -1;
    o->f = NULL;
    return rc;
}

static int publish(sp_sink *s, const char **err) {
    files *fs = s->impl;
    int rc = SP_OK, n = fs->nopen;
    if (n == 0) return SP_OK;
    if (fs->failed) {
        *err = "the sink's files cannot be published (an earlier write or publication failed)";
        return SP_EIO;
    }
    char **tmps = calloc((size_t)n, sizeof *tmps), **names = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        if (seal(&fs->open[i], err) != 0) rc = SP_EIO;
        if (tmps && names) {
            tmps[i] = fs->open[i].tmp_path;
            names[i] = fs->open[i].name;
        }
    }
    if (!tmps || !names) {
        rc = SP_ENOMEM;
    } else if (rc == SP_OK && fs->commit) {
        char base[1024];
        base_name(s, base, sizeof base);
        if (sp_fcommit_publish(fs->commit, base, tmps, names, n, fs->rows, err) != 0) rc = SP_EIO;
    } else if (rc == SP_OK) {
        for (int i = 0; i < n && rc == SP_OK; i++) {
            char final[4096];
            snprintf(final, sizeof final, "%s/%s", s->name, names[i]);
            if (rename(tmps[i], final) != 0) rc = SP_EIO;
        }
    }
    free(tmps);
    free(names);
    if (rc != SP_OK) {
        fs->failed = 1;
        sp_error("cannot publish the files of %s: %s", s->name, strerror(errno));
        *err = "cannot publish output file";
        return rc;
    }
    sp_debug("published %d file(s) in %s (%" PRId64 " rows, %" PRId64 " bytes)", n, s->name,
             fs->rows, fs->bytes);
    for (int i = 0; i < n; i++) close_file(&fs->open[i]);
    fs->nopen = 0;
    fs->seq++;
    fs->bytes = fs->rows = 0;
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

/* The open file of partition directory rel, or -1. */
static int find_open(const files *fs, const char *rel, size_t len) {
    if (fs->nopen && strlen(fs->open[fs->last].rel) == len &&
        memcmp(fs->open[fs->last].rel, rel, len) == 0)
        return fs->last;
    for (int i = 0; i < fs->nopen; i++)
        if (strlen(fs->open[i].rel) == len && memcmp(fs->open[i].rel, rel, len) == 0) return i;
    return -1;
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
    if (fs->hive && (rc = sp_hive_path(fs->hive, fs->schema, &fs->rel, err)) != 0)
        return rc == -2 ? SP_EMALFORMED : SP_ENOMEM;
    const char *rel = fs->hive ? fs->rel.data : "";
    size_t rel_len = fs->hive ? fs->rel.len : 0;
    /* Roll between input records only, so that all outputs of a record
     * are published together (the checkpoint lists whole records). */
    int same_record = m->in && m->in == fs->last_in &&
                      m->in->offset == fs->last_offset;
    int at = find_open(fs, rel, rel_len);
    if (fs->nopen && !same_record &&
        ((fs->roll_bytes > 0 && fs->bytes >= fs->roll_bytes) ||
         (at < 0 && fs->nopen >= MAX_OPEN_FILES))) {
        if ((rc = publish(s, err)) != SP_OK) return rc;
        at = -1;
    }
    if (at < 0) {
        if ((rc = open_file(s, rel, rel_len, err)) != SP_OK) {
            if (same_record) fs->failed = 1; /* the record's other outputs are written */
            return rc;
        }
        at = fs->nopen - 1;
    }
    if (fs->failed) {
        *err = "the sink's files cannot be published (an earlier write or publication failed)";
        return SP_EIO;
    }
    ofile *o = &fs->open[at];
    fs->last = at;
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
    int64_t before = o->pw ? sp_pq_size(o->pw) : o->bytes;
    if (o->pw) {
        if (sp_pq_append(o->pw, err) != 0) {
            fs->failed = 1;
            return SP_EIO;
        }
    } else if ((m->val_len && fwrite(m->val, 1, m->val_len, o->f) != m->val_len) ||
               fputc('\n', o->f) == EOF) {
        fs->failed = 1;
        *err = "cannot write output file";
        return SP_EIO;
    }
    o->bytes += (int64_t)m->val_len + 1;
    o->rows++;
    fs->bytes += (o->pw ? sp_pq_size(o->pw) : o->bytes) - before;
    fs->rows++;
    return rc;
}

static int files_flush(sp_sink *s, int force, const char **err) {
    files *fs = s->impl;
    if (!fs->nopen) return SP_OK;
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
    for (int i = 0; i < fs->nopen; i++) close_file(&fs->open[i]);
    free(fs->open);
    release_segs(fs);
    sp_fcommit_destroy(fs->commit);
    sp_hive_destroy(fs->hive);
    sp_schema_destroy(fs->schema);
    sp_buf_destroy(&fs->rel);
    free(fs->spec);
    free(fs->parts_spec);
    free(fs->segs);
    free(fs->prefix);
    free(fs->suffix);
    free(fs);
    s->impl = NULL;
}

static int same_text(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The schema and partition columns of o: *schema and *hive set (NULL
 * without), or an error. */
static int make_format(const sp_file_opts *o, sp_schema **schema, sp_hive **hive,
                       const char **err) {
    *schema = NULL;
    *hive = NULL;
    if (o->partition_by && *o->partition_by && !o->schema) {
        *err = "partition_by needs a schema";
        return SP_EINVAL;
    }
    if (o->schema && !(*schema = sp_schema_create(o->schema, err))) return SP_EINVAL;
    if (*schema && o->partition_by && *o->partition_by &&
        !(*hive = sp_hive_create(*schema, o->partition_by, err))) {
        sp_schema_destroy(*schema);
        *schema = NULL;
        return SP_EINVAL;
    }
    return SP_OK;
}

/* Takes the format: schema, partition columns and Parquet options. */
static int set_format(files *fs, const sp_file_opts *o, const char **err) {
    sp_schema *schema;
    sp_hive *hive;
    int rc = make_format(o, &schema, &hive, err);
    if (rc != SP_OK) return rc;
    char *spec = o->schema ? strdup(o->schema) : NULL;
    char *parts = o->partition_by ? strdup(o->partition_by) : NULL;
    char *suffix = strdup(o->suffix ? o->suffix : o->schema ? ".parquet" : ".jsonl");
    if ((o->schema && !spec) || (o->partition_by && !parts) || !suffix) {
        sp_hive_destroy(hive);
        sp_schema_destroy(schema);
        free(spec);
        free(parts);
        free(suffix);
        *err = "out of memory";
        return SP_ENOMEM;
    }
    sp_hive_destroy(fs->hive);
    sp_schema_destroy(fs->schema);
    free(fs->spec);
    free(fs->parts_spec);
    free(fs->suffix);
    fs->schema = schema;
    fs->hive = hive;
    fs->spec = spec;
    fs->parts_spec = parts;
    fs->suffix = suffix;
    fs->pq = (sp_pq_opts){o->codec, o->dictionary, o->row_group_bytes, o->row_group_rows, 0,
                          hive ? hive->omit : NULL};
    return SP_OK;
}

int sp_sink_files_update(sp_sink *s, const sp_file_opts *o, const char **err) {
    files *fs = s->impl;
    sp_pq_opts pq = fs->pq;
    pq.codec = o->codec;
    pq.dictionary = o->dictionary;
    pq.row_group_bytes = o->row_group_bytes;
    pq.row_group_rows = o->row_group_rows;
    fs->roll_bytes = o->roll_bytes;
    fs->roll_ms = o->roll_ms;
    if (same_text(o->schema, fs->spec) && same_text(o->partition_by, fs->parts_spec) &&
        memcmp(&pq, &fs->pq, sizeof pq) == 0)
        return SP_OK;
    /* check the new format before publishing with the old one */
    sp_schema *schema;
    sp_hive *hive;
    int rc = make_format(o, &schema, &hive, err);
    sp_hive_destroy(hive);
    sp_schema_destroy(schema);
    if (rc != SP_OK) return rc;
    /* the open files keep the format they began with */
    if ((rc = publish(s, err)) != SP_OK) return rc;
    return set_format(fs, o, err);
}

/* In-progress files of processes that are gone, in dir and its
 * partition directories: never published, their records read again. */
static void remove_abandoned(const char *dir, const char *prefix, const char *suffix,
                             int depth) {
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t pl = strlen(prefix);
    if (!d) return;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        size_t n = strlen(nm);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        if (nm[0] != '.' && strchr(nm, '=') && depth < 16) {
            struct stat st;
            if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
                remove_abandoned(path, prefix, suffix, depth + 1);
            continue;
        }
        if (nm[0] != '.' || strncmp(nm + 1, prefix, pl) != 0 || nm[1 + pl] != '-' ||
            n < 12 || strcmp(nm + n - 11, ".inprogress") != 0)
            continue;
        long pid = sp_fcommit_name_pid(nm, suffix);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 ||
            errno == EPERM)
            continue;
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
    sp_buf_init(&fs->rel);
    if (o->codec != SP_CODEC_NONE && o->codec != SP_CODEC_SNAPPY &&
        o->codec != SP_CODEC_ZSTD) {
        *err = "unknown Parquet compression (none, snappy or zstd)";
        return SP_EINVAL;
    }
    int rc = set_format(fs, o, err);
    if (rc != SP_OK) return rc;
    if (!(fs->prefix = strdup(o->prefix ? o->prefix : "part"))) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    fs->roll_bytes = o->roll_bytes;
    fs->roll_ms = o->roll_ms;
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
    remove_abandoned(s->name, fs->prefix, fs->suffix, 0);
    return SP_OK;
}
