/* libFuzzer target: the Avro codec (sp_avro), which reads untrusted bytes
 * (records from topics, schemas from a registry). The first byte picks a
 * schema: one of a few written here (every type, logical types, a
 * recursive record), or, for the last choice, the rest of the input taken
 * as a schema's JSON. What follows is a datum. A datum that decodes
 * must give JSON that parses, that encodes again, and whose encoding
 * decodes to the same JSON (a round trip through sproc's own encoder). */
#include <stdint.h>
#include <string.h>

#include "fuzz_input.h"
#include "sp_avro.h"
#include "sp_json.h"

static const char *const SCHEMAS[] = {
    "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"n\",\"fields\":["
    "{\"name\":\"i\",\"type\":\"int\"},{\"name\":\"l\",\"type\":\"long\"},"
    "{\"name\":\"f\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"double\"},"
    "{\"name\":\"b\",\"type\":\"boolean\"},{\"name\":\"s\",\"type\":\"string\"},"
    "{\"name\":\"y\",\"type\":\"bytes\"},{\"name\":\"u\",\"type\":[\"null\",\"string\",\"long\"]},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
    "{\"name\":\"x\",\"type\":{\"type\":\"fixed\",\"name\":\"X\",\"size\":3}},"
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"int\"}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"double\"]}}]}",
    "{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"v\",\"type\":\"long\"},"
    "{\"name\":\"next\",\"type\":[\"null\",\"L\"]}]}",
    "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
    "{\"name\":\"p\",\"type\":{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":38,\"scale\":4}},"
    "{\"name\":\"q\",\"type\":{\"type\":\"fixed\",\"name\":\"Q\",\"size\":5,\"logicalType\":\"decimal\",\"precision\":12,\"scale\":2}},"
    "{\"name\":\"t\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}},"
    "{\"name\":\"day\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"}},"
    "{\"name\":\"id\",\"type\":{\"type\":\"string\",\"logicalType\":\"uuid\"}}]}",
    "{\"type\":\"array\",\"items\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":\"string\"}}}",
};
#define NSCHEMAS (sizeof SCHEMAS / sizeof SCHEMAS[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    char err[256];
    sp_avro_schema *s = NULL;
    unsigned pick = data[0] % (NSCHEMAS + 1);
    const char *datum = (const char *)data + 1;
    size_t n = size - 1;
    if (pick == NSCHEMAS) {
        /* a schema of the fuzzer's: parsed (and destroyed) only */
        if (sp_avro_parse(datum, n, &s, err, sizeof err) == 0) {
            FZ_CHECK(s != NULL);
            sp_avro_destroy(s);
        } else {
            FZ_CHECK(s == NULL && err[0]);
        }
        return 0;
    }
    FZ_CHECK(sp_avro_parse(SCHEMAS[pick], strlen(SCHEMAS[pick]), &s, err, sizeof err) == 0);
    sp_buf json, bin, again;
    sp_buf_init(&json);
    sp_buf_init(&bin);
    sp_buf_init(&again);
    if (sp_avro_decode(s, datum, n, &json, err, sizeof err) == 0) {
        sp_json_index ix;
        sp_json_index_init(&ix);
        const char *e;
        size_t pos;
        FZ_CHECK(sp_json_index_parse(&ix, json.data, json.len, &e, &pos) == 0);
        sp_json_index_destroy(&ix);
        if (sp_avro_encode(s, json.data, json.len, &bin, err, sizeof err) != 0) {
            fprintf(stderr, "decoded %.*s\nbut cannot encode it: %s\n", (int)json.len, json.data, err);
            FZ_CHECK(0);
        }
        FZ_CHECK(sp_avro_decode(s, bin.data, bin.len, &again, err, sizeof err) == 0);
        FZ_CHECK(again.len == json.len && memcmp(again.data, json.data, json.len) == 0);
    }
    sp_buf_destroy(&json);
    sp_buf_destroy(&bin);
    sp_buf_destroy(&again);
    sp_avro_destroy(s);
    return 0;
}
