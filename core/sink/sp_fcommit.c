/* Entries are small text files, one per publication, named after its
 * file (or its files' common name: partition directories each get a file
 * of that name):
 *
 *   sproc-file-commit 1
 *   file trips-1764000000000-4242-00003.parquet
 *   file pickup_date=2024-01-02/trips-1764000000000-4242-00003.parquet
 *   rows 120000
 *   offsets tripdata 0 1000 40999
 *
 * ("offsets TOPIC PARTITION FIRST LAST", inclusive; a file line holds
 * the rest of its line, spaces included). One file per entry keeps a
 * publication atomic (write, sync, rename) and lets processes of one
 * group share the directory without a lock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_fcommit.h"
#include "sp_log.h"

typedef struct range {
    char *topic;
    int32_t partition;
    int64_t first, last; /* last: for covered ranges; upto for published */
} range;

struct sp_fcommit {
    char *dir, *out_dir;
    range *upto; /* per partition: offset after the last published record */
    size_t nupto, upto_cap;
    range *open; /* per partition: records in the open file */
    size_t nopen, open_cap;
};

int sp_mkdirs(const char *dir) {
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

int sp_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

long sp_fcommit_name_pid(const char *name, const char *suffix) {
    char buf[1024];
    size_t n = strlen(name), sl = strlen(suffix);
    if (*name == '.') {
        name++;
        n--;
    }
    if (n >= sizeof buf) return -1;
    memcpy(buf, name, n + 1);
    if (n > 11 && strcmp(buf + n - 11, ".inprogress") == 0) buf[n -= 11] = '\0';
    if (n < sl || strcmp(buf + n - sl, suffix) != 0) return -1;
    buf[n - sl] = '\0';
    char *seq = strrchr(buf, '-');
    if (!seq) return -1;
    *seq = '\0';
    char *pid = strrchr(buf, '-'), *end;
    if (!pid) return -1;
    long v = strtol(pid + 1, &end, 10);
    return *end == '\0' && v > 0 ? v : -1;
}

static int pid_alive(long pid) {
    return pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

static range *find(range *a, size_t n, const char *topic, int32_t partition) {
    for (size_t i = 0; i < n; i++)
        if (a[i].partition == partition && strcmp(a[i].topic, topic) == 0)
            return &a[i];
    return NULL;
}

static range *add(range **a, size_t *n, size_t *cap, const char *topic,
                  int32_t partition) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        range *t = realloc(*a, c * sizeof *t);
        if (!t) return NULL;
        *a = t;
        *cap = c;
    }
    range *r = &(*a)[*n];
    if (!(r->topic = strdup(topic))) return NULL;
    r->partition = partition;
    r->first = r->last = -1;
    (*n)++;
    return r;
}

static void clear(range *a, size_t *n) {
    for (size_t i = 0; i < *n; i++) free(a[i].topic);
    *n = 0;
}

/* The in-progress path of out_dir/name: its base name hidden, in its
 * own directory. */
static void inprogress_path(const char *out_dir, const char *name, char *buf, size_t n) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    int w = snprintf(buf, n, "%s/%.*s.%s.inprogress", out_dir, (int)(base - name), name, base);
    if (w < 0 || (size_t)w >= n) buf[0] = '\0'; /* no such file */
}

/* A listed file that is missing but whose synced in-progress file is
 * there gets the rename it was waiting for. */
static void finish_rename(sp_fcommit *c, const char *file) {
    char final[4096], tmp[4096];
    struct stat st;
    snprintf(final, sizeof final, "%s/%s", c->out_dir, file);
    if (stat(final, &st) == 0) return;
    inprogress_path(c->out_dir, file, tmp, sizeof tmp);
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    long pid = sp_fcommit_name_pid(base, strrchr(base, '.') ? strrchr(base, '.') : "");
    if (pid > 0 && pid != (long)getpid() && pid_alive(pid)) return;
    if (rename(tmp, final) == 0) {
        sp_info("finished publishing %s (interrupted by a crash)", final);
        *strrchr(final, '/') = '\0';
        sp_fsync_dir(final);
    } else {
        sp_warn("file %s is listed in the checkpoint %s but missing", final, c->dir);
    }
}

/* Reads one entry, finishing its renames. */
static int read_entry(sp_fcommit *c, const char *path) {
    FILE *f = fopen(path, "r");
    char line[4096], topic[512];
    int32_t part;
    int64_t first, last;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "file ", 5) == 0) {
            line[strcspn(line, "\n")] = '\0';
            if (line[5]) finish_rename(c, line + 5);
            continue;
        }
        if (sscanf(line, "offsets %511s %" SCNd32 " %" SCNd64 " %" SCNd64, topic,
                   &part, &first, &last) != 4)
            continue;
        range *r = find(c->upto, c->nupto, topic, part);
        if (!r && !(r = add(&c->upto, &c->nupto, &c->upto_cap, topic, part))) {
            fclose(f);
            return -1;
        }
        if (last + 1 > r->first) r->first = last + 1;
    }
    fclose(f);
    return 0;
}

int sp_fcommit_rescan(sp_fcommit *c, const char **err) {
    DIR *d = opendir(c->dir);
    struct dirent *e;
    char path[4096];
    if (!d) {
        *err = "cannot read the file checkpoint directory";
        return -1;
    }
    clear(c->upto, &c->nupto);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 8 || strcmp(e->d_name + n - 7, ".commit") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", c->dir, e->d_name);
        if (read_entry(c, path) != 0) {
            closedir(d);
            *err = "cannot read a file checkpoint entry";
            return -1;
        }
    }
    closedir(d);
    return 0;
}

sp_fcommit *sp_fcommit_open(const char *checkpoint_dir, const char *out_dir,
                            const char **err) {
    sp_fcommit *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(checkpoint_dir)) ||
        !(c->out_dir = strdup(out_dir))) {
        *err = "out of memory";
        goto fail;
    }
    if (sp_mkdirs(checkpoint_dir) != 0) {
        sp_error("cannot create directory %s: %s", checkpoint_dir, strerror(errno));
        *err = "cannot create the file checkpoint directory";
        goto fail;
    }
    if (sp_fcommit_rescan(c, err) != 0) goto fail;
    return c;
fail:
    sp_fcommit_destroy(c);
    return NULL;
}

void sp_fcommit_destroy(sp_fcommit *c) {
    if (!c) return;
    clear(c->upto, &c->nupto);
    clear(c->open, &c->nopen);
    free(c->upto);
    free(c->open);
    free(c->dir);
    free(c->out_dir);
    free(c);
}

int sp_fcommit_published(sp_fcommit *c, const char *topic, int32_t partition,
                         int64_t offset) {
    range *r = find(c->upto, c->nupto, topic, partition);
    return r && offset < r->first;
}

int sp_fcommit_cover(sp_fcommit *c, const char *topic, int32_t partition,
                     int64_t offset) {
    range *r = c->nopen && c->open[c->nopen - 1].partition == partition &&
                       strcmp(c->open[c->nopen - 1].topic, topic) == 0
                   ? &c->open[c->nopen - 1]
                   : find(c->open, c->nopen, topic, partition);
    if (!r && !(r = add(&c->open, &c->nopen, &c->open_cap, topic, partition)))
        return -1;
    if (r->first < 0 || offset < r->first) r->first = offset;
    if (offset > r->last) r->last = offset;
    return 0;
}

void sp_fcommit_discard(sp_fcommit *c) { clear(c->open, &c->nopen); }

/* Renames tmp to out_dir/name and syncs its directory. */
static int rename_synced(const sp_fcommit *c, const char *tmp, const char *name) {
    char final[4096];
    snprintf(final, sizeof final, "%s/%s", c->out_dir, name);
    if (rename(tmp, final) != 0) return -1;
    *strrchr(final, '/') = '\0';
    return sp_fsync_dir(final);
}

int sp_fcommit_publish(sp_fcommit *c, const char *name, char *const *tmp_paths,
                       char *const *names, int n, int64_t rows, const char **err) {
    char entry[4096], entry_tmp[4096];
    snprintf(entry, sizeof entry, "%s/%s.commit", c->dir, name);
    snprintf(entry_tmp, sizeof entry_tmp, "%s/.%s.commit.tmp", c->dir, name);
    FILE *f = fopen(entry_tmp, "w");
    int ok = f != NULL;
    if (ok) {
        fprintf(f, "sproc-file-commit 1\n");
        for (int i = 0; i < n; i++) fprintf(f, "file %s\n", names[i]);
        fprintf(f, "rows %" PRId64 "\n", rows);
        for (size_t i = 0; i < c->nopen; i++)
            fprintf(f, "offsets %s %" PRId32 " %" PRId64 " %" PRId64 "\n",
                    c->open[i].topic, c->open[i].partition, c->open[i].first,
                    c->open[i].last);
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
    }
    ok = ok && rename(entry_tmp, entry) == 0 && sp_fsync_dir(c->dir) == 0;
    /* listed: from here on a restart finishes the renames if we do not */
    for (int i = 0; ok && i < n; i++) ok = rename_synced(c, tmp_paths[i], names[i]) == 0;
    if (!ok) {
        sp_error("cannot publish the files of %s with its checkpoint entry: %s", entry,
                 strerror(errno));
        *err = "cannot publish output file";
        return -1;
    }
    for (size_t i = 0; i < c->nopen; i++) {
        range *o = &c->open[i];
        range *r = find(c->upto, c->nupto, o->topic, o->partition);
        if (!r && !(r = add(&c->upto, &c->nupto, &c->upto_cap, o->topic,
                            o->partition))) {
            *err = "out of memory";
            return -1;
        }
        if (o->last + 1 > r->first) r->first = o->last + 1;
    }
    sp_fcommit_discard(c);
    return 0;
}
