/* The pieces of the Parquet writer that readers are strict about: the
 * Thrift compact encoding, the RLE/bit-packing hybrid (checked by
 * decoding it back), schema conversion, the file frame, and the
 * exactly-once file checkpoint. pyarrow and DuckDB read whole files in
 * tests/integration/test_parquet.py. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_fcommit.h"
#include "sp_hive.h"
#include "sp_pq.h"
#include "sp_test.h"
#include "sp_thrift.h"

static void test_thrift(void) {
    sp_buf b;
    sp_thrift t;
    sp_buf_init(&b);
    sp_thrift_init(&t, &b);
    sp_thrift_i32(&t, 1, 5);      /* delta 1, i32: 0x15, zigzag 10 */
    sp_thrift_i32(&t, 17, -1);    /* delta 16: long form 0x05, id 34, value 1 */
    sp_thrift_bool(&t, 18, 1);    /* 0x11 */
    sp_thrift_list(&t, 19, SP_TT_I32, 3); /* 0x19, 0x35 */
    sp_thrift_elem_i32(&t, 0);
    sp_thrift_elem_i32(&t, 1);
    sp_thrift_elem_i32(&t, 2);
    sp_thrift_list(&t, 20, SP_TT_BINARY, 20); /* 0x19, 0xf8 0x14 */
    sp_thrift_begin(&t, 21);      /* 0x1c, then an empty struct: 0x00 */
    sp_thrift_end(&t);
    sp_thrift_i64(&t, 22, 300);   /* 0x16, zigzag 600 = 0xd8 0x04 */
    sp_thrift_end(&t);
    static const unsigned char want[] = {0x15, 0x0a, 0x05, 0x22, 0x01, 0x11, 0x19,
                                         0x35, 0x00, 0x02, 0x04, 0x19, 0xf8, 0x14,
                                         0x1c, 0x00, 0x16, 0xd8, 0x04, 0x00};
    SP_CHECK_INT(b.len, sizeof want);
    SP_CHECK(b.len == sizeof want && memcmp(b.data, want, sizeof want) == 0);
    SP_CHECK_INT(t.failed, 0);
    sp_buf_destroy(&b);
}

static uint64_t uleb(const unsigned char **p) {
    uint64_t v = 0;
    int shift = 0;
    while (**p & 0x80) v |= (uint64_t)(*(*p)++ & 0x7f) << shift, shift += 7;
    return v | (uint64_t)(*(*p)++) << shift;
}

/* The reader side of the hybrid, as the format describes it. */
static size_t rle_decode(const unsigned char *p, size_t len, int bw, uint32_t *out,
                         size_t n) {
    const unsigned char *end = p + len;
    size_t k = 0;
    while (p < end && k < n) {
        uint64_t h = uleb(&p);
        if (h & 1) {
            size_t count = (size_t)(h >> 1) * 8;
            uint64_t acc = 0;
            int nacc = 0;
            for (size_t i = 0; i < count; i++) {
                while (nacc < bw) acc |= (uint64_t)*p++ << nacc, nacc += 8;
                uint32_t v = (uint32_t)(acc & ((1ULL << bw) - 1));
                acc >>= bw;
                nacc -= bw;
                if (k < n) out[k++] = v;
            }
        } else {
            uint32_t v = 0;
            for (int i = 0; i < (bw + 7) / 8; i++) v |= (uint32_t)*p++ << (8 * i);
            for (size_t i = 0; i < (h >> 1) && k < n; i++) out[k++] = v;
        }
    }
    return k;
}

static void test_rle(void) {
    sp_buf b;
    sp_buf_init(&b);
    uint32_t ten[10] = {0};
    sp_pq_rle(&b, ten, 10, 1);
    SP_CHECK(b.len == 2 && memcmp(b.data, "\x14\x00", 2) == 0); /* a run of 10 zeros */
    sp_buf_reset(&b);
    uint32_t lit[8] = {1, 0, 1, 1, 0, 0, 0, 1};
    sp_pq_rle(&b, lit, 8, 1);
    SP_CHECK_MEM(b.data, b.len, "\x03\x8d"); /* one group of 8, LSB first */
    /* random runs and literals at every width round-trip */
    srand(7);
    for (int bw = 1; bw <= 20; bw++) {
        uint32_t v[3000], back[3000];
        size_t n = 1 + (size_t)(rand() % 3000);
        for (size_t i = 0; i < n;) {
            uint32_t x = (uint32_t)rand() & ((1u << bw) - 1);
            size_t r = rand() % 3 == 0 ? 1 + (size_t)(rand() % 40) : 1;
            for (size_t j = 0; j < r && i < n; j++) v[i++] = x;
        }
        sp_buf_reset(&b);
        SP_CHECK_INT(sp_pq_rle(&b, v, n, bw), 0);
        size_t got = rle_decode((const unsigned char *)b.data, b.len, bw, back, n);
        SP_CHECK_INT(got, n);
        SP_CHECK(memcmp(v, back, n * sizeof *v) == 0);
    }
    sp_buf_destroy(&b);
}

static sp_schema *trip_schema(void) {
    const char *err = NULL;
    sp_schema *s = sp_schema_create(
        "id:int64!,name:string,x:double,ok:boolean,t:timestamp,"
        "loc:struct{lat:double,lon:double!}",
        &err);
    SP_CHECK(s != NULL);
    return s;
}

static int conv(sp_schema *s, const char *json, const char **err) {
    return sp_schema_convert(s, json, strlen(json), NULL, err);
}

static void test_schema(void) {
    const char *err = NULL;
    sp_schema *s = trip_schema();
    SP_CHECK_INT(s->ncolumns, 7);
    char path[64];
    sp_schema_path(s, 6, path, sizeof path);
    SP_CHECK_MEM(path, strlen(path), "loc.lon");
    /* definition levels: optional loc and optional lat → 2; lon required → 1 */
    SP_CHECK_INT(s->nodes[s->leaves[5]].max_def, 2);
    SP_CHECK_INT(s->nodes[s->leaves[6]].max_def, 1);
    SP_CHECK_INT(s->nodes[s->leaves[0]].max_def, 0);

    SP_CHECK_INT(conv(s, "{\"id\":\"3.0\",\"name\":\"a\\\"b\",\"x\":\"2.5\",\"ok\":\"true\","
                         "\"t\":\"2016-01-01 00:00:01\",\"loc\":{\"lon\":1},\"z\":[1]}", &err), 0);
    sp_buf out;
    sp_buf_init(&out);
    sp_schema_write_json(s, &out);
    SP_CHECK_MEM(out.data, out.len,
                 "{\"id\":3,\"name\":\"a\\\"b\",\"x\":2.5,\"ok\":true,\"t\":1451606401000,"
                 "\"loc\":{\"lat\":null,\"lon\":1}}");
    SP_CHECK_INT(s->vals[s->leaves[5]].def, 1); /* loc there, lat null */
    SP_CHECK_INT(s->vals[s->leaves[6]].def, 1);
    /* empty strings are null for non-strings; a null struct nulls its leaves */
    SP_CHECK_INT(conv(s, "{\"id\":1,\"name\":\"\",\"x\":\"\",\"loc\":null}", &err), 0);
    SP_CHECK_INT(s->vals[s->leaves[1]].present, 1);
    SP_CHECK_INT(s->vals[s->leaves[2]].present, 0);
    SP_CHECK_INT(s->vals[s->leaves[6]].def, 0);

    SP_CHECK_INT(conv(s, "{\"id\":\"3.5\"}", &err), -1);
    SP_CHECK(strstr(err, "field \"id\": \"3.5\" is not an int64") != NULL);
    SP_CHECK_INT(conv(s, "{\"name\":\"x\"}", &err), -1);
    SP_CHECK(strstr(err, "field \"id\" is missing and not nullable") != NULL);
    SP_CHECK_INT(conv(s, "{\"id\":1,\"loc\":{\"lat\":1}}", &err), -1);
    SP_CHECK(strstr(err, "field \"loc.lon\" is missing") != NULL);
    SP_CHECK_INT(conv(s, "{\"id\":1,\"t\":\"yesterday\"}", &err), -1);
    SP_CHECK(strstr(err, "is not a timestamp") != NULL);
    SP_CHECK_INT(conv(s, "{\"id\":1,\"loc\":5}", &err), -1);
    SP_CHECK(strstr(err, "is not an object") != NULL);
    SP_CHECK_INT(conv(s, "[1]", &err), -1);
    SP_CHECK_INT(conv(s, "{\"id\":1", &err), -1);
    SP_CHECK(strstr(err, "malformed JSON") != NULL);

    SP_CHECK(sp_schema_create("a:int32", &err) == NULL);
    SP_CHECK(strstr(err, "unknown type") != NULL);
    SP_CHECK(sp_schema_create("a:struct{}", &err) == NULL);
    SP_CHECK(sp_schema_create("a", &err) == NULL);
    /* found by tests/fuzz/targets/fuzz_schema: a name twice overran the
     * scratch, a name that is not UTF-8 made every value unwritable as
     * JSON, and "nan" in a not-nullable double came out as null */
    SP_CHECK(sp_schema_create("s:struct{a:string,a:double}", &err) == NULL);
    SP_CHECK(strstr(err, "twice") != NULL);
    sp_schema *ok = sp_schema_create("a:string,s:struct{a:string}", &err);
    SP_CHECK(ok != NULL);
    sp_schema_destroy(ok);
    SP_CHECK(sp_schema_create("\xff:string", &err) == NULL);
    SP_CHECK(strstr(err, "not UTF-8") != NULL);
    SP_CHECK_INT(conv(s, "{\"id\":1,\"x\":\"nan\"}", &err), -1);
    SP_CHECK(strstr(err, "is not a double") != NULL);
    SP_CHECK_INT(conv(s, "{\"id\":1,\"x\":\"-1e999\"}", &err), -1);
    sp_buf_destroy(&out);
    sp_schema_destroy(s);
}


/* date, decimal(p,s) and list<T>: conversion, levels and canonical JSON */
static void test_schema_types(void) {
    const char *err = NULL;
    sp_schema *s = sp_schema_create("d:date,amt:decimal(7,2)!,tags:list<string>,"
                                    "xs:list<decimal(5,1)>!,o:struct{l:list<date>}", &err);
    SP_CHECK(s != NULL);
    if (!s) return;
    SP_CHECK_INT(s->ncolumns, 5);
    /* tags: optional list (1), repeated (2), optional element (3) */
    SP_CHECK_INT(s->nodes[s->leaves[2]].max_def, 3);
    SP_CHECK_INT(s->nodes[s->leaves[2]].max_rep, 1);
    SP_CHECK_INT(s->nodes[s->leaves[3]].max_def, 2); /* xs required */
    SP_CHECK_INT(s->nodes[s->leaves[4]].max_def, 4); /* under optional o */
    SP_CHECK_INT(s->nodes[s->leaves[1]].max_rep, 0);
    sp_buf out;
    sp_buf_init(&out);
    SP_CHECK_INT(conv(s, "{\"d\":\"2024-02-29\",\"amt\":\"-12.345\",\"tags\":[\"a\",null,\"c\\\"\"],"
                         "\"xs\":[],\"o\":{\"l\":[\"1969-12-31T23:00:00Z\"]}}", &err), 0);
    SP_CHECK_INT(s->vals[s->leaves[0]].v.i, 19782);
    SP_CHECK_INT(s->vals[s->leaves[1]].v.i, -1235); /* half up, away from zero */
    SP_CHECK_INT(s->items[s->leaves[2]].n, 3);
    SP_CHECK_INT(s->items[s->leaves[2]].v[1].def, 2);
    SP_CHECK_INT(s->items[s->leaves[2]].v[2].def, 3);
    SP_CHECK_INT(s->items[s->leaves[3]].n, 0);
    /* empty: defined as far as the list (required: level 0) */
    SP_CHECK_INT(s->vals[s->nodes[s->leaves[3]].parent].def, 0);
    sp_schema_write_json(s, &out);
    SP_CHECK_MEM(out.data, out.len,
                 "{\"d\":\"2024-02-29\",\"amt\":-12.35,\"tags\":[\"a\",null,\"c\\\"\"],"
                 "\"xs\":[],\"o\":{\"l\":[\"1969-12-31\"]}}");
    /* decimals: exponents, rounding, range; strings and numbers */
    static const struct { const char *in; int64_t want; } dec[] = {
        {"0.005", 1}, {"0.004", 0}, {"1e2", 10000}, {"12345.67", 1234567}, {"-0.01", -1},
        {"99999.994", 9999999}, {"1.5E-1", 15}, {"\"7\"", 700}, {"\"000001.10\"", 110}};
    for (size_t i = 0; i < sizeof dec / sizeof *dec; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"amt\":%s,\"xs\":[]}", dec[i].in);
        SP_CHECK_INT(conv(s, json, &err), 0);
        SP_CHECK_INT(s->vals[s->leaves[1]].v.i, dec[i].want);
    }
    static const char *bad_dec[] = {"99999.995", "100000", "\"1e400\"", "\"abc\"", "true",
                                    "\"1.2.3\"", "\"1e\"", "\"-\""};
    for (size_t i = 0; i < sizeof bad_dec / sizeof *bad_dec; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"amt\":%s,\"xs\":[]}", bad_dec[i]);
        SP_CHECK_INT(conv(s, json, &err), -1);
        SP_CHECK(strstr(err, "is not a decimal(7,2)") != NULL);
    }
    sp_buf_reset(&out);
    SP_CHECK_INT(conv(s, "{\"amt\":0.05,\"xs\":[1.25,null],\"tags\":null,\"o\":null}", &err), 0);
    sp_schema_write_json(s, &out);
    SP_CHECK_MEM(out.data, out.len,
                 "{\"d\":null,\"amt\":0.05,\"tags\":null,\"xs\":[1.3,null],\"o\":null}");
    SP_CHECK_INT(s->items[s->leaves[4]].n, 0); /* o null: its list too */
    SP_CHECK_INT(conv(s, "{\"amt\":1,\"xs\":5}", &err), -1);
    SP_CHECK(strstr(err, "\"xs\"") && strstr(err, "is not an array"));
    SP_CHECK_INT(conv(s, "{\"amt\":1}", &err), -1);
    SP_CHECK(strstr(err, "field \"xs\" is missing and not nullable") != NULL);
    SP_CHECK_INT(conv(s, "{\"amt\":1,\"xs\":[],\"d\":20240101}", &err), -1);
    SP_CHECK(strstr(err, "is not a date") != NULL);
    SP_CHECK_INT(conv(s, "{\"amt\":1,\"xs\":[\"x\"]}", &err), -1);
    SP_CHECK(strstr(err, "xs.element") != NULL);

    /* partition paths: Hive's escaping, nulls, timestamps */
    sp_schema *p = sp_schema_create("day:date,who:string,t:timestamp,n:int64", &err);
    SP_CHECK(p != NULL);
    sp_hive *h = sp_hive_create(p, "day,who,t", &err);
    SP_CHECK(h != NULL);
    sp_buf path;
    sp_buf_init(&path);
    SP_CHECK_INT(conv(p, "{\"day\":\"2024-01-02\",\"who\":\"a/b=c%d e\",\"t\":1704190332500,\"n\":1}",
                      &err), 0);
    SP_CHECK_INT(sp_hive_path(h, p, &path, &err), 0);
    SP_CHECK_MEM(path.data, path.len,
                 "day=2024-01-02/who=a%2Fb%3Dc%25d e/t=2024-01-02 10%3A12%3A12.500");
    SP_CHECK_INT(conv(p, "{\"who\":\"\"}", &err), 0);
    SP_CHECK_INT(sp_hive_path(h, p, &path, &err), 0);
    SP_CHECK_MEM(path.data, path.len,
                 "day=__HIVE_DEFAULT_PARTITION__/who=__HIVE_DEFAULT_PARTITION__/"
                 "t=__HIVE_DEFAULT_PARTITION__");
    SP_CHECK_INT(h->omit[h->nodes[0]], 1);
    sp_hive_destroy(h);
    SP_CHECK(sp_hive_create(p, "nope", &err) == NULL);
    SP_CHECK(sp_hive_create(p, "day,who,t,n", &err) == NULL);
    SP_CHECK(strstr(err, "nothing is left") != NULL);
    SP_CHECK(sp_hive_create(s, "tags", &err) == NULL);
    SP_CHECK(strstr(err, "plain type") != NULL);
    sp_buf_destroy(&path);
    sp_schema_destroy(p);

    SP_CHECK(sp_schema_create("a:decimal(19,2)", &err) == NULL);
    SP_CHECK(strstr(err, "precision") != NULL);
    SP_CHECK(sp_schema_create("a:decimal(3,4)", &err) == NULL);
    SP_CHECK(sp_schema_create("a:list<struct{b:int64}>", &err) == NULL);
    SP_CHECK(strstr(err, "plain type") != NULL);
    SP_CHECK(sp_schema_create("a:list<list<int64>>", &err) == NULL);
    SP_CHECK(sp_schema_create("a:list<int64", &err) == NULL);
    sp_buf_destroy(&out);
    sp_schema_destroy(s);
}

static void test_file_frame(void) {
    const char *err = NULL;
    sp_schema *s = trip_schema();
    char path[] = "/tmp/sp_test_pq_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w+");
    sp_pq_opts o = {SP_CODEC_ZSTD, 1, 1 << 20, 1000, 0, NULL};
    sp_pq_writer *w = sp_pq_create(s, &o, f, &err);
    SP_CHECK(w != NULL);
    char json[256];
    for (int i = 0; i < 2500; i++) {
        snprintf(json, sizeof json, "{\"id\":%d,\"name\":\"n%d\",\"loc\":{\"lon\":%d}}", i, i % 7, i);
        SP_CHECK_INT(conv(s, json, &err), 0);
        SP_CHECK_INT(sp_pq_append(w, &err), 0);
    }
    SP_CHECK_INT(sp_pq_rows(w), 2500);
    SP_CHECK_INT(sp_pq_finish(w, &err), 0);
    int64_t size = sp_pq_size(w);
    sp_pq_destroy(w);
    fflush(f);
    struct stat st;
    fstat(fd, &st);
    SP_CHECK_INT(st.st_size, size);
    unsigned char head[4], tail[8];
    fseek(f, 0, SEEK_SET);
    SP_CHECK_INT(fread(head, 1, 4, f), 4);
    fseek(f, -8, SEEK_END);
    SP_CHECK_INT(fread(tail, 1, 8, f), 8);
    SP_CHECK(memcmp(head, "PAR1", 4) == 0 && memcmp(tail + 4, "PAR1", 4) == 0);
    uint32_t flen = tail[0] | tail[1] << 8 | tail[2] << 16 | (uint32_t)tail[3] << 24;
    SP_CHECK(flen > 0 && flen < (uint32_t)size - 12);
    fclose(f);
    unlink(path);
    sp_schema_destroy(s);
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    fputs("rows\n", f);
    fclose(f);
}

static void test_fcommit(void) {
    const char *err = NULL;
    char root[] = "/tmp/sp_test_fc_XXXXXX";
    SP_CHECK(mkdtemp(root) != NULL);
    char chk[256], out[256], tmp[512], name[128];
    snprintf(chk, sizeof chk, "%s/chk", root);
    snprintf(out, sizeof out, "%s/out", root);
    sp_mkdirs(out);
    sp_fcommit *c = sp_fcommit_open(chk, out, &err);
    SP_CHECK(c != NULL);
    SP_CHECK_INT(sp_fcommit_published(c, "t", 0, 0), 0);
    sp_fcommit_cover(c, "t", 0, 10);
    sp_fcommit_cover(c, "t", 0, 19);
    sp_fcommit_cover(c, "t", 1, 5);
    snprintf(name, sizeof name, "p-1-%ld-00000.jsonl", (long)getpid());
    snprintf(tmp, sizeof tmp, "%s/.%s.inprogress", out, name);
    touch(tmp);
    char *tmps[] = {tmp}, *names[] = {name};
    SP_CHECK_INT(sp_fcommit_publish(c, name, tmps, names, 1, 11, &err), 0);
    SP_CHECK_INT(sp_fcommit_published(c, "t", 0, 19), 1);
    SP_CHECK_INT(sp_fcommit_published(c, "t", 0, 20), 0);
    SP_CHECK_INT(sp_fcommit_published(c, "t", 1, 5), 1);
    SP_CHECK_INT(sp_fcommit_published(c, "u", 0, 0), 0);
    sp_fcommit_destroy(c);

    /* a crash between the entry and the rename: a restart renames */
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    snprintf(name, sizeof name, "p-1-%ld-00001.jsonl", (long)child);
    SP_CHECK_INT(sp_fcommit_name_pid(name, ".jsonl"), child);
    char entry[512], final[512];
    snprintf(entry, sizeof entry, "%s/%s.commit", chk, name);
    FILE *f = fopen(entry, "w");
    fprintf(f, "sproc-file-commit 1\nfile %s\nrows 1\noffsets t 0 20 29\n", name);
    fclose(f);
    snprintf(tmp, sizeof tmp, "%s/.%s.inprogress", out, name);
    touch(tmp);
    c = sp_fcommit_open(chk, out, &err);
    SP_CHECK(c != NULL);
    snprintf(final, sizeof final, "%s/%s", out, name);
    struct stat st;
    SP_CHECK_INT(stat(final, &st), 0);
    SP_CHECK_INT(sp_fcommit_published(c, "t", 0, 29), 1);
    SP_CHECK_INT(sp_fcommit_published(c, "t", 0, 30), 0);
    sp_fcommit_destroy(c);

    /* partition directories: one entry lists a file in each, and a crash
     * before their renames is finished by a restart, in each directory */
    char dir_a[400], dir_b[400], tmp_a[1024], tmp_b[1024], fin[1024];
    snprintf(name, sizeof name, "p-1-%ld-00002.parquet", (long)child);
    snprintf(dir_a, sizeof dir_a, "%s/d=2024-01-01", out);
    snprintf(dir_b, sizeof dir_b, "%s/d=2024-01-02 10%%3A00%%3A00", out);
    sp_mkdirs(dir_a);
    sp_mkdirs(dir_b);
    snprintf(tmp_a, sizeof tmp_a, "%s/.%s.inprogress", dir_a, name);
    snprintf(tmp_b, sizeof tmp_b, "%s/.%s.inprogress", dir_b, name);
    touch(tmp_a);
    touch(tmp_b);
    snprintf(entry, sizeof entry, "%s/%s.commit", chk, name);
    f = fopen(entry, "w");
    fprintf(f, "sproc-file-commit 1\nfile d=2024-01-01/%s\nfile d=2024-01-02 10%%3A00%%3A00/%s\n"
               "rows 2\noffsets t 0 30 31\n", name, name);
    fclose(f);
    c = sp_fcommit_open(chk, out, &err);
    SP_CHECK(c != NULL);
    snprintf(fin, sizeof fin, "%s/%s", dir_a, name);
    SP_CHECK_INT(stat(fin, &st), 0);
    snprintf(fin, sizeof fin, "%s/%s", dir_b, name);
    SP_CHECK_INT(stat(fin, &st), 0);
    SP_CHECK_INT(sp_fcommit_published(c, "t", 0, 31), 1);
    sp_fcommit_destroy(c);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    SP_CHECK_INT(system(cmd), 0);
}

int main(void) {
    test_thrift();
    test_rle();
    test_schema();
    test_schema_types();
    test_file_frame();
    test_fcommit();
    return sp_test_summary();
}
