/* Avro's binary encoding against the reference: the datum below was
 * written by fastavro (Python) from the same record; sproc decodes it to
 * JSON and encodes that JSON back to the same bytes. */
#include <stdlib.h>

#include "sp_avro.h"
#include "sp_test.h"

static const char *SCHEMA =
    "{\"type\":\"record\",\"name\":\"Trip\",\"namespace\":\"t\",\"fields\":["
    "{\"name\":\"id\",\"type\":\"long\"},"
    "{\"name\":\"vendor\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"fare\",\"type\":\"double\"},{\"name\":\"ok\",\"type\":\"boolean\"},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
    "{\"name\":\"extra\",\"type\":{\"type\":\"map\",\"values\":\"int\"}},"
    "{\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\",\"symbols\":[\"A\",\"B\",\"C\"]}},"
    "{\"name\":\"price\",\"type\":{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":10,\"scale\":2}},"
    "{\"name\":\"at\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"day\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"}},"
    "{\"name\":\"f\",\"type\":\"float\"},"
    "{\"name\":\"next\",\"type\":[\"null\",\"Trip\"],\"default\":null}]}";

/* fastavro.schemaless_writer of the record JSON describes */
static const char *HEX =
    "a7e8c8e99707020656c3a9000000000000294001040261026200040278010279d804000406fe1dc0dcec8682"
    "99638cb5020000c03f02020000000000000000000000000002010000000080be00";

static const char *JSON =
    "{\"id\":-123456789012,\"vendor\":\"V\xc3\xa9\",\"fare\":12.5,\"ok\":true,\"tags\":[\"a\",\"b\"],"
    "\"extra\":{\"x\":-1,\"y\":300},\"kind\":\"C\",\"price\":-1234.56,\"at\":1704164645678,"
    "\"day\":\"2024-02-29\",\"f\":1.5,\"next\":{\"id\":1,\"vendor\":null,\"fare\":0,\"ok\":false,\"tags\":[],"
    "\"extra\":{},\"kind\":\"A\",\"price\":0.01,\"at\":0,\"day\":\"1970-01-01\",\"f\":-0.25,\"next\":null}}";

static size_t unhex(const char *h, char *out) {
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

static sp_avro_schema *schema(const char *text) {
    sp_avro_schema *s = NULL;
    char err[256];
    if (sp_avro_parse(text, strlen(text), &s, err, sizeof err) != 0) fprintf(stderr, "schema: %s\n", err);
    return s;
}

static void reference_datum(void) {
    sp_avro_schema *s = schema(SCHEMA);
    SP_CHECK(s != NULL);
    if (!s) return;
    char bin[256], err[256];
    size_t n = unhex(HEX, bin);
    sp_buf out;
    sp_buf_init(&out);
    SP_CHECK_INT(sp_avro_decode(s, bin, n, &out, err, sizeof err), 0);
    SP_CHECK_MEM(out.data, out.len, JSON);
    sp_buf enc;
    sp_buf_init(&enc);
    SP_CHECK_INT(sp_avro_encode(s, JSON, strlen(JSON), &enc, err, sizeof err), 0);
    SP_CHECK(enc.len == n && memcmp(enc.data, bin, n) == 0);
    /* a datum cut short, or with bytes after it, is refused */
    SP_CHECK_INT(sp_avro_decode(s, bin, n - 3, &out, err, sizeof err), -1);
    SP_CHECK_INT(sp_avro_decode(s, bin, n / 2, &out, err, sizeof err), -1);
    bin[n] = 0;
    SP_CHECK_INT(sp_avro_decode(s, bin, n + 1, &out, err, sizeof err), -1);
    SP_CHECK(strstr(err, "after the datum") != NULL);
    sp_buf_destroy(&out);
    sp_buf_destroy(&enc);
    sp_avro_destroy(s);
}

static int encode(const char *schema_text, const char *json, sp_buf *out, char *err) {
    sp_avro_schema *s = schema(schema_text);
    sp_buf_reset(out);
    int rc = s ? sp_avro_encode(s, json, strlen(json), out, err, 256) : -9;
    sp_avro_destroy(s);
    return rc;
}

static void encoding_rules(void) {
    sp_buf out;
    sp_buf_init(&out);
    char err[256];
    const char *rec = "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"},"
                      "{\"name\":\"b\",\"type\":[\"null\",\"long\"]},{\"name\":\"c\",\"type\":\"string\","
                      "\"default\":\"x\\\"y\"}]}";
    /* a missing nullable field is null, a missing field with a default takes it */
    SP_CHECK_INT(encode(rec, "{\"a\":1}", &out, err), 0);
    SP_CHECK(out.len == 6 && memcmp(out.data, "\x02\x00\x06x\"y", 6) == 0);
    SP_CHECK_INT(encode(rec, "{\"b\":5}", &out, err), -1);
    SP_CHECK(strstr(err, "no field a") != NULL);
    SP_CHECK_INT(encode(rec, "{\"a\":\"1\"}", &out, err), -1);
    SP_CHECK(strstr(err, "field a: expected an integer") != NULL);
    SP_CHECK_INT(encode(rec, "{\"a\":3000000000}", &out, err), -1);
    SP_CHECK_INT(encode(rec, "{\"a\":1.5}", &out, err), -1);
    /* a union takes the first branch that fits */
    SP_CHECK_INT(encode("[\"null\",\"int\",\"string\"]", "\"s\"", &out, err), 0);
    SP_CHECK_MEM(out.data, out.len, "\x04\x02s");
    SP_CHECK_INT(encode("[\"null\",\"int\",\"string\"]", "null", &out, err), 0);
    SP_CHECK(out.len == 1 && out.data[0] == 0);
    SP_CHECK_INT(encode("[\"null\",\"int\"]", "true", &out, err), -1);
    /* timestamps and dates from ISO-8601 */
    SP_CHECK_INT(encode("{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}",
                        "\"1970-01-01T00:00:01.5Z\"", &out, err), 0);
    SP_CHECK_MEM(out.data, out.len, "\xb8\x17"); /* 1500 */
    SP_CHECK_INT(encode("{\"type\":\"int\",\"logicalType\":\"date\"}", "\"1969-12-31\"", &out, err), 0);
    SP_CHECK_MEM(out.data, out.len, "\x01"); /* -1 */
    /* decimals: a number or a string, never rounded; fixed sign-extended */
    SP_CHECK_INT(encode("{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":5,\"scale\":2}",
                        "\"-0.01\"", &out, err), 0);
    SP_CHECK_MEM(out.data, out.len, "\x02\xff");
    SP_CHECK_INT(encode("{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":5,\"scale\":2}",
                        "1.005", &out, err), -1);
    SP_CHECK_INT(encode("{\"type\":\"fixed\",\"name\":\"D\",\"size\":3,\"logicalType\":\"decimal\","
                        "\"precision\":6,\"scale\":0}", "-2", &out, err), 0);
    SP_CHECK_MEM(out.data, out.len, "\xff\xff\xfe");
    /* bytes that are not UTF-8 go both ways as {"b64": ...} */
    SP_CHECK_INT(encode("\"bytes\"", "{\"b64\":\"/wA=\"}", &out, err), 0);
    SP_CHECK(out.len == 3 && memcmp(out.data, "\x04\xff\x00", 3) == 0);
    sp_avro_schema *s = schema("\"bytes\"");
    sp_buf js;
    sp_buf_init(&js);
    SP_CHECK_INT(sp_avro_decode(s, out.data, out.len, &js, err, sizeof err), 0);
    SP_CHECK_MEM(js.data, js.len, "{\"b64\":\"/wA=\"}");
    sp_avro_destroy(s);
    sp_buf_destroy(&js);
    sp_buf_destroy(&out);
}

static void schema_errors(void) {
    sp_avro_schema *s = NULL;
    char err[256];
    const char *bad[] = {"\"nosuch\"", "{\"type\":\"record\",\"fields\":[]}", "[]",
                         "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"x\"}]}",
                         "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[]}", "[\"int\",[\"null\"]]",
                         "{\"type\":\"fixed\",\"name\":\"F\"}", "not json", "{\"type\":\"array\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = sp_avro_parse(bad[i], strlen(bad[i]), &s, err, sizeof err);
        if (rc == 0) fprintf(stderr, "accepted: %s\n", bad[i]);
        SP_CHECK_INT(rc, -1);
        SP_CHECK(s == NULL && err[0]);
    }
    /* a union index, an enum index or a length past the end */
    s = schema("[\"null\",\"string\"]");
    sp_buf out;
    sp_buf_init(&out);
    SP_CHECK_INT(sp_avro_decode(s, "\x04", 1, &out, err, sizeof err), -1);
    SP_CHECK_INT(sp_avro_decode(s, "\x02\x7f", 2, &out, err, sizeof err), -1);
    sp_avro_destroy(s);
    s = schema("{\"type\":\"array\",\"items\":\"null\"}");
    /* a block of 2^62 nulls would take no bytes: a count past the end is refused */
    SP_CHECK_INT(sp_avro_decode(s, "\xfe\xff\xff\xff\xff\xff\xff\xff\x7f\x00", 10, &out, err, sizeof err), -1);
    sp_avro_destroy(s);
    sp_buf_destroy(&out);
}

/* Found by the fuzz target (its corpus keeps the inputs): NaN decodes to
 * null and null encodes back to NaN; a decimal with more digits than its
 * precision is refused; a long near 2^63 goes through exactly. */
static void fuzz_findings(void) {
    char err[256];
    sp_buf out, back;
    sp_buf_init(&out);
    sp_buf_init(&back);
    sp_avro_schema *s = schema("\"double\"");
    SP_CHECK_INT(sp_avro_decode(s, "\x00\x00\x00\x00\x00\x00\xf8\x7f", 8, &out, err, sizeof err), 0);
    SP_CHECK_MEM(out.data, out.len, "null");
    SP_CHECK_INT(sp_avro_encode(s, "null", 4, &back, err, sizeof err), 0);
    SP_CHECK(back.len == 8 && (unsigned char)back.data[7] == 0x7f);
    sp_avro_destroy(s);
    s = schema("{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":3,\"scale\":1}");
    SP_CHECK_INT(sp_avro_decode(s, "\x04\x03\xe8", 3, &out, err, sizeof err), -1); /* 1000 */
    SP_CHECK(strstr(err, "more than 3 digits") != NULL);
    SP_CHECK_INT(sp_avro_encode(s, "12.3", 4, &back, err, sizeof err), 0);
    SP_CHECK_INT(sp_avro_encode(s, "123.4", 5, &back, err, sizeof err), -1);
    sp_avro_destroy(s);
    s = schema("\"long\"");
    sp_buf_reset(&back);
    SP_CHECK_INT(sp_avro_encode(s, "9223372036854775752", 19, &back, err, sizeof err), 0);
    sp_buf_reset(&out);
    SP_CHECK_INT(sp_avro_decode(s, back.data, back.len, &out, err, sizeof err), 0);
    SP_CHECK_MEM(out.data, out.len, "9223372036854775752");
    SP_CHECK_INT(sp_avro_encode(s, "9223372036854775808", 19, &back, err, sizeof err), -1);
    sp_avro_destroy(s);
    sp_buf_destroy(&out);
    sp_buf_destroy(&back);
}

int main(void) {
    fuzz_findings();
    reference_datum();
    encoding_rules();
    schema_errors();
    printf("%d passed, %d failed\n", sp_test_passed, sp_test_failed);
    return sp_test_failed != 0;
}
