#include "sp_lmdb.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct part_db {
    int32_t partition;
    MDB_dbi dbi;
} part_db;

struct sp_lmdb {
    MDB_env *env;
    MDB_txn *txn; /* the batch's write transaction, or NULL */
    MDB_dbi meta;
    part_db *parts;
    int32_t nparts;
    char *buf;    /* ts + value, for puts */
    size_t cap;
    void *map;
    size_t mapsize;
};

/* Address space only: the file grows with the data. */
#define MAP_SIZE ((size_t)256 << 30)

static int fail(const char **err, int rc) {
    *err = mdb_strerror(rc);
    return -1;
}

static int txn(sp_lmdb *l, const char **err) {
    if (l->txn) return 0;
    int rc = mdb_txn_begin(l->env, NULL, 0, &l->txn);
    return rc ? fail(err, rc) : 0;
}

/* LMDB does not say where it mapped its file (me_mapaddr is only set for
 * fixed maps): find the mapping of dir/data.mdb in /proc/self/maps. */
static void find_map(sp_lmdb *l, const char *dir) {
    char want[4096], line[4608];
    char *real = realpath(dir, NULL);
    snprintf(want, sizeof want, "%s/data.mdb", real ? real : dir);
    free(real);
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char *path = strchr(line, '/');
        if (!path) continue;
        path[strcspn(path, "\n")] = '\0';
        if (strcmp(path, want) != 0 || sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
        l->map = (void *)lo;
        l->mapsize = hi - lo;
        break;
    }
    fclose(f);
}

int sp_lmdb_open(sp_lmdb **out, const char *dir, const char **err) {
    sp_lmdb *l = calloc(1, sizeof *l);
    int rc;
    *out = NULL;
    if (!l) {
        *err = "out of memory";
        return -1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        *err = strerror(errno);
        free(l);
        return -1;
    }
    /* no fsync: the changelog, not this file, is what survives a crash */
    if ((rc = mdb_env_create(&l->env)) || (rc = mdb_env_set_maxdbs(l->env, 4096)) ||
        (rc = mdb_env_set_mapsize(l->env, MAP_SIZE)) ||
        (rc = mdb_env_open(l->env, dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS, 0644)))
        goto bad;
    if ((rc = mdb_txn_begin(l->env, NULL, 0, &l->txn)) ||
        (rc = mdb_dbi_open(l->txn, "meta", MDB_CREATE, &l->meta)))
        goto bad;
    /* the partitions' databases are named p<N> in the main database */
    MDB_dbi main;
    MDB_cursor *c;
    MDB_val k, v;
    if ((rc = mdb_dbi_open(l->txn, NULL, 0, &main)) || (rc = mdb_cursor_open(l->txn, main, &c)))
        goto bad;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        char name[32];
        if (k.mv_size < 2 || k.mv_size >= sizeof name || ((char *)k.mv_data)[0] != 'p') continue;
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        part_db *p = realloc(l->parts, (size_t)(l->nparts + 1) * sizeof *p);
        if (!p) break;
        l->parts = p;
        p[l->nparts].partition = (int32_t)strtol(name + 1, NULL, 10);
        p[l->nparts].dbi = 0;
        l->nparts++;
    }
    mdb_cursor_close(c);
    for (int32_t i = 0; i < l->nparts; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%" PRId32, l->parts[i].partition);
        if ((rc = mdb_dbi_open(l->txn, name, 0, &l->parts[i].dbi))) goto bad;
    }
    if ((rc = mdb_txn_commit(l->txn))) {
        l->txn = NULL;
        goto bad;
    }
    l->txn = NULL;
    find_map(l, dir);
    *out = l;
    return 0;
bad:
    *err = mdb_strerror(rc);
    sp_lmdb_close(l);
    return -1;
}

void sp_lmdb_close(sp_lmdb *l) {
    if (!l) return;
    if (l->txn) mdb_txn_commit(l->txn);
    if (l->env) mdb_env_close(l->env);
    free(l->parts);
    free(l->buf);
    free(l);
}

static part_db *find(sp_lmdb *l, int32_t part) {
    for (int32_t i = 0; i < l->nparts; i++)
        if (l->parts[i].partition == part) return &l->parts[i];
    return NULL;
}

/* The partition's database, created on first use (in the open write
 * transaction: a new handle is usable once that commits, and LMDB keeps
 * it valid in the meantime for this transaction). */
static part_db *db(sp_lmdb *l, int32_t part, int create, const char **err) {
    part_db *p = find(l, part);
    if (p) return p;
    if (txn(l, err)) return NULL;
    /* another process of the application may have made it meanwhile */
    char name[32];
    snprintf(name, sizeof name, "p%" PRId32, part);
    MDB_dbi dbi;
    int rc = mdb_dbi_open(l->txn, name, create ? MDB_CREATE : 0, &dbi);
    if (rc == MDB_NOTFOUND && !create) return NULL;
    if (rc) {
        fail(err, rc);
        return NULL;
    }
    p = realloc(l->parts, (size_t)(l->nparts + 1) * sizeof *p);
    if (!p) {
        *err = "out of memory";
        return NULL;
    }
    l->parts = p;
    p[l->nparts] = (part_db){part, dbi};
    return &l->parts[l->nparts++];
}

int sp_lmdb_get(sp_lmdb *l, int32_t part, const char *key, size_t klen,
                const char **val, size_t *vlen, int64_t *ts, const char **err) {
    part_db *p = db(l, part, 0, err);
    if (!p || klen == 0) return 0;
    if (txn(l, err)) return -1;
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(l->txn, p->dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return fail(err, rc);
    memcpy(ts, v.mv_data, sizeof *ts);
    *val = (const char *)v.mv_data + sizeof *ts;
    *vlen = v.mv_size - sizeof *ts;
    return 1;
}

int sp_lmdb_put(sp_lmdb *l, int32_t part, const char *key, size_t klen,
                const char *val, size_t vlen, int64_t ts, const char **err) {
    if (klen == 0 || klen > 511) {
        *err = "a disk-backed store's keys are 1 to 511 bytes long";
        return -1;
    }
    part_db *p = db(l, part, 1, err);
    if (!p || txn(l, err)) return -1;
    size_t n = sizeof ts + vlen;
    if (n > l->cap) {
        char *b = realloc(l->buf, n);
        if (!b) {
            *err = "out of memory";
            return -1;
        }
        l->buf = b;
        l->cap = n;
    }
    memcpy(l->buf, &ts, sizeof ts);
    if (vlen) memcpy(l->buf + sizeof ts, val, vlen);
    MDB_val k = {klen, (void *)key}, v = {n, l->buf};
    int rc = mdb_put(l->txn, p->dbi, &k, &v, 0);
    return rc ? fail(err, rc) : 0;
}

int sp_lmdb_del(sp_lmdb *l, int32_t part, const char *key, size_t klen,
                const char **err) {
    part_db *p = db(l, part, 0, err);
    if (!p || klen == 0) return 0;
    if (txn(l, err)) return -1;
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(l->txn, p->dbi, &k, NULL);
    if (rc == MDB_NOTFOUND) return 0;
    return rc ? fail(err, rc) : 1;
}

int sp_lmdb_seek(sp_lmdb *l, int32_t part, const char *from, size_t flen,
                 int strict, const char **key, size_t *klen, const char **val,
                 size_t *vlen, int64_t *ts, const char **err) {
    part_db *p = db(l, part, 0, err);
    if (!p) return 0;
    if (txn(l, err)) return -1;
    MDB_cursor *c;
    int rc = mdb_cursor_open(l->txn, p->dbi, &c);
    if (rc) return fail(err, rc);
    MDB_val k = {flen, (void *)from}, v;
    if (!from || flen == 0)
        rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    else
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && strict && from && k.mv_size == flen && memcmp(k.mv_data, from, flen) == 0)
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return fail(err, rc);
    *key = k.mv_data;
    *klen = k.mv_size;
    memcpy(ts, v.mv_data, sizeof *ts);
    *val = (const char *)v.mv_data + sizeof *ts;
    *vlen = v.mv_size - sizeof *ts;
    return 1;
}

int64_t sp_lmdb_count(sp_lmdb *l, int32_t part) {
    const char *err;
    part_db *p = db(l, part, 0, &err);
    MDB_stat st;
    if (!p || txn(l, &err) || mdb_stat(l->txn, p->dbi, &st)) return 0;
    return (int64_t)st.ms_entries;
}

int64_t sp_lmdb_expire(sp_lmdb *l, int32_t part, int64_t ts,
                       void (*fn)(void *arg, const char *key, size_t klen),
                       void *arg) {
    const char *err;
    part_db *p = db(l, part, 0, &err);
    MDB_cursor *c;
    MDB_val k, v;
    int64_t n = 0;
    if (!p || txn(l, &err) || mdb_cursor_open(l->txn, p->dbi, &c)) return 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        int64_t t;
        memcpy(&t, v.mv_data, sizeof t);
        if (t > ts) continue;
        if (fn) fn(arg, k.mv_data, k.mv_size);
        if (mdb_cursor_del(c, 0) == 0) n++;
    }
    mdb_cursor_close(c);
    return n;
}

int sp_lmdb_drop(sp_lmdb *l, int32_t part, const char **err) {
    part_db *p = db(l, part, 0, err);
    if (!p) return 0;
    if (txn(l, err)) return -1;
    int rc = mdb_drop(l->txn, p->dbi, 0);
    return rc ? fail(err, rc) : 0;
}

int64_t sp_lmdb_offset(sp_lmdb *l, int32_t part, sp_buf *positions) {
    const char *err;
    char name[32];
    int64_t off;
    snprintf(name, sizeof name, "offset.p%" PRId32, part);
    MDB_val k = {strlen(name), name}, v;
    if (txn(l, &err) || mdb_get(l->txn, l->meta, &k, &v) || v.mv_size != sizeof off)
        return -1;
    memcpy(&off, v.mv_data, sizeof off);
    if (!positions) return off;
    sp_buf_reset(positions);
    snprintf(name, sizeof name, "pos.p%" PRId32, part);
    k = (MDB_val){strlen(name), name};
    if (mdb_get(l->txn, l->meta, &k, &v) == 0 &&
        sp_buf_append(positions, v.mv_data, v.mv_size) != 0)
        return -1;
    return off;
}

int sp_lmdb_set_offset(sp_lmdb *l, int32_t part, int64_t offset, const char *positions,
                       size_t positions_len, const char **err) {
    char name[32], pname[32];
    snprintf(name, sizeof name, "offset.p%" PRId32, part);
    snprintf(pname, sizeof pname, "pos.p%" PRId32, part);
    MDB_val k = {strlen(name), name}, v = {sizeof offset, &offset};
    MDB_val pk = {strlen(pname), pname}, pv = {positions_len, (void *)positions};
    if (txn(l, err)) return -1;
    int rc = offset < 0 ? mdb_del(l->txn, l->meta, &k, NULL)
                        : mdb_put(l->txn, l->meta, &k, &v, 0);
    if (rc == MDB_NOTFOUND) rc = 0;
    int prc = offset < 0 || !positions_len ? mdb_del(l->txn, l->meta, &pk, NULL)
                                           : mdb_put(l->txn, l->meta, &pk, &pv, 0);
    if (prc == MDB_NOTFOUND) prc = 0;
    if (!rc) rc = prc;
    return rc ? fail(err, rc) : 0;
}

int32_t sp_lmdb_partitions(sp_lmdb *l, int32_t *out, int32_t max) {
    for (int32_t i = 0; i < l->nparts && i < max; i++) out[i] = l->parts[i].partition;
    return l->nparts;
}

#define RESIDENT_LIMIT ((long)64 << 20)

/* Bytes of file-backed memory mapped in this process (the stores' maps,
 * mostly; /proc/self/statm's "shared" pages). */
static long file_resident(void) {
    static long page;
    long size, resident, shared = 0;
    if (!page) page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld %ld", &size, &resident, &shared) != 3) shared = 0;
    fclose(f);
    return shared * page;
}

int sp_lmdb_commit(sp_lmdb *l, const char **err) {
    if (!l->txn) return 0;
    int rc = mdb_txn_commit(l->txn);
    l->txn = NULL;
    if (rc) return fail(err, rc);
    /* The map's pages that were read stay mapped and count as this
     * process's memory until the kernel needs them: past a limit, let go
     * of them, so that a store larger than memory keeps RSS bounded (they
     * stay in the page cache; the next read maps them again). */
    if (l->map && file_resident() > RESIDENT_LIMIT) madvise(l->map, l->mapsize, MADV_DONTNEED);
    return 0;
}
